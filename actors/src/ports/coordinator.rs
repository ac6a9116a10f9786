//! The `Coordinator` port: what several stateless front ends share — update
//! dedup and idempotency keys, rate limits, TTL locks, the latest quotes,
//! leaderboards as sorted sets with players' display names, and fan-out of
//! price changes between instances. Adapters: Redis (across instances) and
//! local (one process).

use serde::{Deserialize, Serialize};

use super::BoxFuture;
use crate::domain::ids::PlayerId;

/// Longest display name a coordinator stores, in chars (Unicode scalar
/// values); longer names are cut on a char boundary.
pub const PLAYER_NAME_CHARS_MAX: usize = 64;

/// Why the coordinator could not answer (callers fall back or refuse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
}

/// A rate limiter's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; try again after this long.
    Throttled {
        retry_after_ms: u64,
    },
}

/// Proof of holding a lock (to release only one's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockToken(pub String);

/// Latest quote of one asset as published for other instances and pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedQuote {
    pub ticker: String,
    /// Decimal strings, as shown to players.
    pub bid: String,
    pub ask: String,
    pub mid: String,
    pub halted: bool,
}

/// A market minute's prices, as fanned out between instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricesUpdate {
    pub minute: u64,
    pub quotes: Vec<PublishedQuote>,
}

/// One player's score on one board, for the calls that set many at once.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardScore {
    pub board: String,
    pub player: PlayerId,
    pub score: f64,
}

/// Shared coordination between front ends.
pub trait Coordinator: Send + Sync + 'static {
    /// `true` the first time `key` is seen within `ttl_ms` (update dedup,
    /// idempotent buttons, payment ids); `false` for repeats.
    fn first_seen(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<bool, CoordError>>;

    /// Whether `key` was marked by `first_seen` and is still live (asks
    /// without marking: a gateway marks an update only once it is taken).
    fn seen(&self, key: &str) -> BoxFuture<Result<bool, CoordError>>;

    /// `seen` for each of `keys`, in order, in one call (one round trip on
    /// a networked adapter).
    fn seen_many(&self, keys: Vec<String>) -> BoxFuture<Result<Vec<bool>, CoordError>>;

    /// Marks each of `keys` for `ttl_ms`, as `first_seen` would, in one call.
    fn mark_many(&self, keys: Vec<String>, ttl_ms: u64) -> BoxFuture<Result<(), CoordError>>;

    /// Counts one action against `key`: at most `limit` per `window_ms`.
    fn rate_limit(&self, key: &str, limit: u32, window_ms: u64) -> BoxFuture<Result<RateDecision, CoordError>>;

    /// Takes the lock `key` for `ttl_ms` if free.
    fn try_lock(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<Option<LockToken>, CoordError>>;

    /// Releases the lock if `token` still holds it.
    fn unlock(&self, key: &str, token: LockToken) -> BoxFuture<Result<(), CoordError>>;

    /// Stores the latest quotes and announces them to other instances.
    fn publish_prices(&self, update: PricesUpdate) -> BoxFuture<Result<(), CoordError>>;

    /// The latest published quotes, if any.
    fn latest_prices(&self) -> BoxFuture<Result<Option<PricesUpdate>, CoordError>>;

    /// Sets a player's score on a board (sorted set).
    fn board_set(&self, board: &str, player: PlayerId, score: f64) -> BoxFuture<Result<(), CoordError>>;

    /// `board_set` for each entry, in one call (one round trip on a
    /// networked adapter); a later entry for the same board and player wins.
    fn boards_set(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<(), CoordError>>;

    /// Sets each entry's score only where its player has none on its board
    /// yet, in one call, and answers each entry's score afterwards (the one
    /// it had, or the one just set), in order.
    fn boards_set_absent(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<Vec<f64>, CoordError>>;

    /// Ranks `offset..offset+limit` of a board, best first. The order is
    /// total and the same in every adapter: higher score first, equal
    /// scores by player id, lowest first.
    fn board_range(&self, board: &str, offset: u64, limit: u64) -> BoxFuture<Result<Vec<(PlayerId, f64)>, CoordError>>;

    /// A player's 0-based rank and score on a board (in `board_range` order).
    fn board_rank(&self, board: &str, player: PlayerId) -> BoxFuture<Result<Option<(u64, f64)>, CoordError>>;

    /// How many players a board holds (0 for a board that does not exist), for paging.
    fn board_count(&self, board: &str) -> BoxFuture<Result<u64, CoordError>>;

    /// Takes a player off a board (nothing if absent).
    fn board_remove(&self, board: &str, player: PlayerId) -> BoxFuture<Result<(), CoordError>>;

    /// Merges every entry of `from` into `to`, keeping the higher score
    /// where a player is on both, and deletes `from`, in one atomic step
    /// (a group upgraded to a supergroup keeps its board; a season's board
    /// is archived). Moving a board onto itself changes nothing.
    fn board_move(&self, from: &str, to: &str) -> BoxFuture<Result<(), CoordError>>;

    /// Deletes a board and every entry on it.
    fn board_clear(&self, board: &str) -> BoxFuture<Result<(), CoordError>>;

    /// Stores players' display names for boards, each cut to
    /// `PLAYER_NAME_CHARS_MAX` chars. A later entry for the same player wins.
    fn names_set(&self, entries: Vec<(PlayerId, String)>) -> BoxFuture<Result<(), CoordError>>;

    /// The stored display names of `players`, in the order asked (`None`
    /// where no name is stored).
    fn names_get(&self, players: Vec<PlayerId>) -> BoxFuture<Result<Vec<Option<String>>, CoordError>>;

    /// Whether the coordinator answers.
    fn ping(&self) -> BoxFuture<Result<(), CoordError>>;
}
