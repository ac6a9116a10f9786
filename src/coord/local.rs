//! `LocalCoordinator`: the `Coordinator` port for one process. Dedup keys,
//! rate windows and locks live in bounded maps whose entries expire; boards
//! are sorted vectors; display names a bounded map; the latest prices are fanned out to in-process
//! subscribers through a `tokio::sync::broadcast` channel.
//!
//! Semantics match the Redis adapter so that either can stand in for the
//! other: rate limits are fixed windows that start at a key's first action;
//! boards order by score, best first, and equal scores by player id,
//! lowest first.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::future::ready;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actors::domain::ids::PlayerId;
use actors::ports::BoxFuture;
use actors::ports::coordinator::{
    BoardScore, CoordError, Coordinator, LockToken, PLAYER_NAME_CHARS_MAX, PricesUpdate, RateDecision,
};
use tokio::sync::broadcast;

/// How much a `LocalCoordinator` may hold: every map is bounded, so memory
/// follows these numbers, not the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLimits {
    /// Dedup keys held at once; past it the key closest to expiry goes first.
    pub seen_keys_max: usize,
    /// Rate-limited keys held at once; past it the window closest to its end goes first.
    pub rate_keys_max: usize,
    /// Locks held at once; past it `try_lock` on a new key answers `None`.
    pub locks_max: usize,
    /// Boards held at once; past it the least recently written board goes.
    pub boards_max: usize,
    /// Entries on one board; past it the lowest entry goes (a worse newcomer is not added).
    pub board_len_max: usize,
    /// Display names held at once; past it the least recently written name goes.
    pub names_max: usize,
    /// Price updates a slow in-process subscriber may fall behind before it skips.
    pub price_subscribers_lag_max: usize,
}

impl Default for LocalLimits {
    fn default() -> Self {
        Self {
            seen_keys_max: 200_000,
            rate_keys_max: 200_000,
            locks_max: 100_000,
            boards_max: 1_000,
            board_len_max: 100_000,
            names_max: 200_000,
            price_subscribers_lag_max: 64,
        }
    }
}

/// The `Coordinator` of a single process (no Redis configured, or Redis down
/// behind a `FallbackCoordinator`).
#[derive(Debug)]
pub struct LocalCoordinator {
    limits: LocalLimits,
    seen: Mutex<TtlMap<()>>,
    rates: Mutex<TtlMap<u32>>,
    locks: Mutex<TtlMap<String>>,
    boards: Mutex<Boards>,
    names: Mutex<Names>,
    latest: RwLock<Option<PricesUpdate>>,
    prices_tx: broadcast::Sender<PricesUpdate>,
}

impl Default for LocalCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalCoordinator {
    /// A coordinator with the default limits.
    #[must_use]
    pub fn new() -> Self {
        Self::with_limits(LocalLimits::default())
    }

    /// A coordinator bounded by `limits`.
    #[must_use]
    pub fn with_limits(limits: LocalLimits) -> Self {
        let (prices_tx, _) = broadcast::channel(limits.price_subscribers_lag_max.max(1));
        Self {
            limits,
            seen: Mutex::new(TtlMap::new(limits.seen_keys_max)),
            rates: Mutex::new(TtlMap::new(limits.rate_keys_max)),
            locks: Mutex::new(TtlMap::new(limits.locks_max)),
            boards: Mutex::new(Boards::default()),
            names: Mutex::new(Names::new(limits.names_max)),
            latest: RwLock::new(None),
            prices_tx,
        }
    }

    /// Every update published from now on, in publication order. A receiver
    /// that falls more than `price_subscribers_lag_max` behind gets
    /// `RecvError::Lagged` and continues with the newest.
    #[must_use]
    pub fn subscribe_prices(&self) -> broadcast::Receiver<PricesUpdate> {
        self.prices_tx.subscribe()
    }

    /// Stores `update` as the latest prices without announcing it (a
    /// write-through copy kept while another coordinator does the fan-out).
    pub fn remember_prices(&self, update: PricesUpdate) {
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Some(update);
    }

    /// `Coordinator::first_seen`, answered synchronously.
    pub fn first_seen_now(&self, key: &str, ttl_ms: u64) -> bool {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        if seen.get(key, now).is_some() {
            return false;
        }
        seen.insert(key, (), now + ttl(ttl_ms), now);
        true
    }

    /// `Coordinator::seen`, answered synchronously.
    pub fn seen_now(&self, key: &str) -> bool {
        lock(&self.seen).get(key, Instant::now()).is_some()
    }

    /// `Coordinator::seen_many`, answered synchronously.
    #[must_use]
    pub fn seen_many_now(&self, keys: &[String]) -> Vec<bool> {
        let now = Instant::now();
        let seen = lock(&self.seen);
        keys.iter().map(|key| seen.get(key, now).is_some()).collect()
    }

    /// `Coordinator::mark_many`, answered synchronously.
    pub fn mark_many_now(&self, keys: &[String], ttl_ms: u64) {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        for key in keys {
            seen.insert(key, (), now + ttl(ttl_ms), now);
        }
    }

    /// `Coordinator::rate_limit`, answered synchronously.
    pub fn rate_limit_now(&self, key: &str, limit: u32, window_ms: u64) -> RateDecision {
        let now = Instant::now();
        let window = ttl(window_ms);
        let mut rates = lock(&self.rates);
        match rates.get_mut(key, now) {
            Some((count, ends)) => {
                if *count < limit {
                    *count += 1;
                    RateDecision::Allowed
                } else {
                    RateDecision::Throttled { retry_after_ms: ms_until(ends, now) }
                }
            }
            None if limit == 0 => RateDecision::Throttled { retry_after_ms: window_ms.max(1) },
            None => {
                rates.insert(key, 1, now + window, now);
                RateDecision::Allowed
            }
        }
    }

    /// `Coordinator::try_lock`, answered synchronously.
    pub fn try_lock_now(&self, key: &str, ttl_ms: u64) -> Option<LockToken> {
        let now = Instant::now();
        let mut locks = lock(&self.locks);
        if locks.get(key, now).is_some() {
            return None;
        }
        locks.purge(now);
        if locks.len() >= self.limits.locks_max {
            return None;
        }
        let token = random_token();
        locks.insert(key, token.clone(), now + ttl(ttl_ms), now);
        Some(LockToken(token))
    }

    /// `Coordinator::unlock`, answered synchronously.
    pub fn unlock_now(&self, key: &str, token: &LockToken) {
        let now = Instant::now();
        let mut locks = lock(&self.locks);
        if locks.get(key, now).is_some_and(|held| *held == token.0) {
            locks.remove(key);
        }
    }

    /// `Coordinator::publish_prices`, answered synchronously.
    pub fn publish_prices_now(&self, update: PricesUpdate) {
        self.remember_prices(update.clone());
        // No receiver is not an error: nobody is watching right now.
        let _ = self.prices_tx.send(update);
    }

    /// `Coordinator::latest_prices`, answered synchronously.
    #[must_use]
    pub fn latest_prices_now(&self) -> Option<PricesUpdate> {
        self.latest.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `Coordinator::board_set`, answered synchronously.
    pub fn board_set_now(&self, board: &str, player: PlayerId, score: f64) -> Result<(), CoordError> {
        let score = checked_score(score)?;
        lock(&self.boards).set(board, player, score, self.limits);
        Ok(())
    }

    /// `Coordinator::boards_set`, answered synchronously (all or nothing:
    /// a score that is not a number refuses the whole call).
    pub fn boards_set_now(&self, scores: &[BoardScore]) -> Result<(), CoordError> {
        let checked = scores.iter().map(|entry| checked_score(entry.score)).collect::<Result<Vec<f64>, _>>()?;
        let mut boards = lock(&self.boards);
        for (entry, score) in scores.iter().zip(checked) {
            boards.set(&entry.board, entry.player, score, self.limits);
        }
        Ok(())
    }

    /// `Coordinator::boards_set_absent`, answered synchronously.
    pub fn boards_set_absent_now(&self, scores: &[BoardScore]) -> Result<Vec<f64>, CoordError> {
        let checked = scores.iter().map(|entry| checked_score(entry.score)).collect::<Result<Vec<f64>, _>>()?;
        let mut boards = lock(&self.boards);
        let mut kept = Vec::with_capacity(scores.len());
        for (entry, score) in scores.iter().zip(checked) {
            match boards.rank(&entry.board, entry.player) {
                Some((_, existing)) => kept.push(existing),
                None => {
                    boards.set(&entry.board, entry.player, score, self.limits);
                    kept.push(score);
                }
            }
        }
        Ok(kept)
    }

    /// `Coordinator::board_range`, answered synchronously.
    #[must_use]
    pub fn board_range_now(&self, board: &str, offset: u64, limit: u64) -> Vec<(PlayerId, f64)> {
        lock(&self.boards).range(board, offset, limit)
    }

    /// `Coordinator::board_rank`, answered synchronously.
    #[must_use]
    pub fn board_rank_now(&self, board: &str, player: PlayerId) -> Option<(u64, f64)> {
        lock(&self.boards).rank(board, player)
    }

    /// `Coordinator::board_count`, answered synchronously.
    #[must_use]
    pub fn board_count_now(&self, board: &str) -> u64 {
        lock(&self.boards).count(board)
    }

    /// `Coordinator::board_remove`, answered synchronously.
    pub fn board_remove_now(&self, board: &str, player: PlayerId) {
        lock(&self.boards).remove(board, player);
    }

    /// `Coordinator::board_move`, answered synchronously.
    pub fn board_move_now(&self, from: &str, to: &str) {
        lock(&self.boards).move_board(from, to, self.limits);
    }

    /// `Coordinator::board_clear`, answered synchronously.
    pub fn board_clear_now(&self, board: &str) {
        lock(&self.boards).boards.remove(board);
    }

    /// `Coordinator::names_set`, answered synchronously.
    pub fn names_set_now(&self, entries: &[(PlayerId, String)]) {
        let mut names = lock(&self.names);
        for (player, name) in entries {
            names.insert(*player, bounded_name(name));
        }
    }

    /// `Coordinator::names_get`, answered synchronously.
    #[must_use]
    pub fn names_get_now(&self, players: &[PlayerId]) -> Vec<Option<String>> {
        let names = lock(&self.names);
        players.iter().map(|player| names.get(*player).map(str::to_owned)).collect()
    }
}

impl Coordinator for LocalCoordinator {
    fn first_seen(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<bool, CoordError>> {
        Box::pin(ready(Ok(self.first_seen_now(key, ttl_ms))))
    }

    fn seen(&self, key: &str) -> BoxFuture<Result<bool, CoordError>> {
        Box::pin(ready(Ok(self.seen_now(key))))
    }

    fn seen_many(&self, keys: Vec<String>) -> BoxFuture<Result<Vec<bool>, CoordError>> {
        Box::pin(ready(Ok(self.seen_many_now(&keys))))
    }

    fn mark_many(&self, keys: Vec<String>, ttl_ms: u64) -> BoxFuture<Result<(), CoordError>> {
        self.mark_many_now(&keys, ttl_ms);
        Box::pin(ready(Ok(())))
    }

    fn rate_limit(&self, key: &str, limit: u32, window_ms: u64) -> BoxFuture<Result<RateDecision, CoordError>> {
        Box::pin(ready(Ok(self.rate_limit_now(key, limit, window_ms))))
    }

    fn try_lock(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<Option<LockToken>, CoordError>> {
        Box::pin(ready(Ok(self.try_lock_now(key, ttl_ms))))
    }

    fn unlock(&self, key: &str, token: LockToken) -> BoxFuture<Result<(), CoordError>> {
        self.unlock_now(key, &token);
        Box::pin(ready(Ok(())))
    }

    fn publish_prices(&self, update: PricesUpdate) -> BoxFuture<Result<(), CoordError>> {
        self.publish_prices_now(update);
        Box::pin(ready(Ok(())))
    }

    fn latest_prices(&self) -> BoxFuture<Result<Option<PricesUpdate>, CoordError>> {
        Box::pin(ready(Ok(self.latest_prices_now())))
    }

    fn board_set(&self, board: &str, player: PlayerId, score: f64) -> BoxFuture<Result<(), CoordError>> {
        Box::pin(ready(self.board_set_now(board, player, score)))
    }

    fn boards_set(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<(), CoordError>> {
        Box::pin(ready(self.boards_set_now(&scores)))
    }

    fn boards_set_absent(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<Vec<f64>, CoordError>> {
        Box::pin(ready(self.boards_set_absent_now(&scores)))
    }

    fn board_range(&self, board: &str, offset: u64, limit: u64) -> BoxFuture<Result<Vec<(PlayerId, f64)>, CoordError>> {
        Box::pin(ready(Ok(self.board_range_now(board, offset, limit))))
    }

    fn board_rank(&self, board: &str, player: PlayerId) -> BoxFuture<Result<Option<(u64, f64)>, CoordError>> {
        Box::pin(ready(Ok(self.board_rank_now(board, player))))
    }

    fn board_count(&self, board: &str) -> BoxFuture<Result<u64, CoordError>> {
        Box::pin(ready(Ok(self.board_count_now(board))))
    }

    fn board_remove(&self, board: &str, player: PlayerId) -> BoxFuture<Result<(), CoordError>> {
        self.board_remove_now(board, player);
        Box::pin(ready(Ok(())))
    }

    fn board_move(&self, from: &str, to: &str) -> BoxFuture<Result<(), CoordError>> {
        self.board_move_now(from, to);
        Box::pin(ready(Ok(())))
    }

    fn board_clear(&self, board: &str) -> BoxFuture<Result<(), CoordError>> {
        self.board_clear_now(board);
        Box::pin(ready(Ok(())))
    }

    fn names_set(&self, entries: Vec<(PlayerId, String)>) -> BoxFuture<Result<(), CoordError>> {
        self.names_set_now(&entries);
        Box::pin(ready(Ok(())))
    }

    fn names_get(&self, players: Vec<PlayerId>) -> BoxFuture<Result<Vec<Option<String>>, CoordError>> {
        Box::pin(ready(Ok(self.names_get_now(&players))))
    }

    fn ping(&self) -> BoxFuture<Result<(), CoordError>> {
        Box::pin(ready(Ok(())))
    }
}

/// A fresh random lock token (128 bits, hex).
pub(crate) fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A board score both adapters accept: not NaN, and `-0.0` stored as `0.0`
/// (Redis does not tell them apart).
pub(crate) fn checked_score(score: f64) -> Result<f64, CoordError> {
    if score.is_nan() { Err(CoordError::Unavailable("board score is NaN".to_owned())) } else { Ok(score + 0.0) }
}

/// `name` cut to `PLAYER_NAME_CHARS_MAX` chars, on a char boundary.
pub(crate) fn bounded_name(name: &str) -> String {
    match name.char_indices().nth(PLAYER_NAME_CHARS_MAX) {
        Some((cut, _)) => name.get(..cut).unwrap_or_default().to_owned(),
        None => name.to_owned(),
    }
}

/// A TTL of at least one millisecond (zero would expire before it is read).
fn ttl(ttl_ms: u64) -> Duration {
    Duration::from_millis(ttl_ms.max(1))
}

/// Whole milliseconds from `now` until `at`, rounded up, at least 1.
fn ms_until(at: Instant, now: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    let ms = u64::try_from(left.as_micros().div_ceil(1_000)).unwrap_or(u64::MAX);
    ms.max(1)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind, still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A string-keyed map whose entries expire, bounded to `len_max` entries:
/// expired entries are purged on insert, and when it is still full the
/// entry closest to expiry is evicted.
#[derive(Debug)]
struct TtlMap<V> {
    entries: HashMap<String, Entry<V>>,
    /// Expiry order: (expires, insertion sequence) → key.
    expiries: BTreeMap<(Instant, u64), String>,
    seq: u64,
    len_max: usize,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires: Instant,
    seq: u64,
}

impl<V> TtlMap<V> {
    fn new(len_max: usize) -> Self {
        Self { entries: HashMap::new(), expiries: BTreeMap::new(), seq: 0, len_max: len_max.max(1) }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, key: &str, now: Instant) -> Option<&V> {
        self.entries.get(key).filter(|entry| entry.expires > now).map(|entry| &entry.value)
    }

    /// The live value and its expiry.
    fn get_mut(&mut self, key: &str, now: Instant) -> Option<(&mut V, Instant)> {
        self.entries.get_mut(key).filter(|entry| entry.expires > now).map(|entry| (&mut entry.value, entry.expires))
    }

    fn insert(&mut self, key: &str, value: V, expires: Instant, now: Instant) {
        self.remove(key);
        self.purge(now);
        while self.entries.len() >= self.len_max {
            let Some(((_, _), oldest)) = self.expiries.pop_first() else { break };
            self.entries.remove(&oldest);
        }
        self.seq += 1;
        self.expiries.insert((expires, self.seq), key.to_owned());
        self.entries.insert(key.to_owned(), Entry { value, expires, seq: self.seq });
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.expiries.remove(&(entry.expires, entry.seq));
        }
    }

    /// Drops every entry expired at `now`.
    fn purge(&mut self, now: Instant) {
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }
}

/// All boards, each a vector sorted best first.
#[derive(Debug, Default)]
struct Boards {
    boards: HashMap<String, Board>,
    writes: u64,
}

#[derive(Debug, Default)]
struct Board {
    /// Sorted by `rank_order`.
    entries: Vec<(f64, PlayerId)>,
    scores: HashMap<PlayerId, f64>,
    last_write: u64,
}

/// Best first: higher score, then lower player id.
fn rank_order(a: &(f64, PlayerId), b: &(f64, PlayerId)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl Boards {
    fn set(&mut self, name: &str, player: PlayerId, score: f64, limits: LocalLimits) {
        self.written(name, limits).set(player, score, limits.board_len_max.max(1));
    }

    /// The board `name`, created if absent (evicting the least recently
    /// written board when full), marked as just written.
    fn written(&mut self, name: &str, limits: LocalLimits) -> &mut Board {
        self.writes += 1;
        if !self.boards.contains_key(name) && self.boards.len() >= limits.boards_max.max(1) {
            let stalest = self.boards.iter().min_by_key(|(_, board)| board.last_write).map(|(name, _)| name.clone());
            if let Some(stalest) = stalest {
                self.boards.remove(&stalest);
            }
        }
        let board = self.boards.entry(name.to_owned()).or_default();
        board.last_write = self.writes;
        board
    }

    fn count(&self, name: &str) -> u64 {
        self.boards.get(name).map_or(0, |board| u64::try_from(board.entries.len()).unwrap_or(u64::MAX))
    }

    /// Takes `player` off the board; a board left empty is deleted (as Redis does).
    fn remove(&mut self, name: &str, player: PlayerId) {
        let Some(board) = self.boards.get_mut(name) else { return };
        board.remove(player);
        if board.entries.is_empty() {
            self.boards.remove(name);
        }
    }

    /// Merges `from` into `to` (higher score wins) and deletes `from`.
    fn move_board(&mut self, from: &str, to: &str, limits: LocalLimits) {
        if from == to {
            return;
        }
        let Some(source) = self.boards.remove(from) else { return };
        self.written(to, limits).merge_max(source, limits.board_len_max.max(1));
    }

    fn range(&self, name: &str, offset: u64, limit: u64) -> Vec<(PlayerId, f64)> {
        let Some(board) = self.boards.get(name) else { return Vec::new() };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        board.entries.iter().skip(skip).take(take).map(|&(score, player)| (player, score)).collect()
    }

    fn rank(&self, name: &str, player: PlayerId) -> Option<(u64, f64)> {
        let board = self.boards.get(name)?;
        let score = *board.scores.get(&player)?;
        let index = board.entries.binary_search_by(|probe| rank_order(probe, &(score, player))).ok()?;
        Some((u64::try_from(index).unwrap_or(u64::MAX), score))
    }
}

impl Board {
    fn remove(&mut self, player: PlayerId) {
        if let Some(old) = self.scores.remove(&player)
            && let Ok(index) = self.entries.binary_search_by(|probe| rank_order(probe, &(old, player)))
        {
            self.entries.remove(index);
        }
    }

    /// Adds every entry of `other`, keeping the higher score of a player on
    /// both, then keeps the best `len_max`.
    fn merge_max(&mut self, other: Board, len_max: usize) {
        for (player, score) in other.scores {
            let kept = self.scores.entry(player).or_insert(score);
            if score > *kept {
                *kept = score;
            }
        }
        let mut entries: Vec<(f64, PlayerId)> = self.scores.iter().map(|(&player, &score)| (score, player)).collect();
        entries.sort_unstable_by(rank_order);
        if entries.len() > len_max {
            for (_, dropped) in entries.split_off(len_max) {
                self.scores.remove(&dropped);
            }
        }
        self.entries = entries;
    }

    fn set(&mut self, player: PlayerId, score: f64, len_max: usize) {
        self.remove(player);
        let entry = (score, player);
        if self.entries.len() >= len_max {
            match self.entries.last() {
                Some(lowest) if rank_order(&entry, lowest) == Ordering::Less => {
                    let lowest_player = lowest.1;
                    self.entries.pop();
                    self.scores.remove(&lowest_player);
                }
                _ => return,
            }
        }
        let index = self.entries.binary_search_by(|probe| rank_order(probe, &entry)).unwrap_or_else(|at| at);
        self.entries.insert(index, entry);
        self.scores.insert(player, score);
    }
}

/// Display names by player, bounded: past `len_max` the least recently
/// written name is evicted.
#[derive(Debug)]
struct Names {
    names: HashMap<PlayerId, (String, u64)>,
    /// Write order: sequence → player.
    writes: BTreeMap<u64, PlayerId>,
    seq: u64,
    len_max: usize,
}

impl Names {
    fn new(len_max: usize) -> Self {
        Self { names: HashMap::new(), writes: BTreeMap::new(), seq: 0, len_max: len_max.max(1) }
    }

    fn get(&self, player: PlayerId) -> Option<&str> {
        self.names.get(&player).map(|(name, _)| name.as_str())
    }

    fn insert(&mut self, player: PlayerId, name: String) {
        if let Some((_, seq)) = self.names.remove(&player) {
            self.writes.remove(&seq);
        }
        while self.names.len() >= self.len_max {
            let Some((_, oldest)) = self.writes.pop_first() else { break };
            self.names.remove(&oldest);
        }
        self.seq += 1;
        self.writes.insert(self.seq, player);
        self.names.insert(player, (name, self.seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ttl_map_evicts_the_entry_closest_to_expiry() {
        let now = Instant::now();
        let mut map = TtlMap::new(2);
        map.insert("a", (), now + Duration::from_secs(5), now);
        map.insert("b", (), now + Duration::from_secs(1), now);
        map.insert("c", (), now + Duration::from_secs(9), now);
        assert_eq!(map.len(), 2);
        assert!(map.get("b", now).is_none());
        assert!(map.get("a", now).is_some() && map.get("c", now).is_some());
    }

    #[test]
    fn expired_entries_are_purged_on_insert() {
        let now = Instant::now();
        let mut map = TtlMap::new(10);
        map.insert("a", (), now + Duration::from_millis(1), now);
        let later = now + Duration::from_millis(5);
        map.insert("b", (), later + Duration::from_secs(1), later);
        assert_eq!(map.len(), 1);
        assert_eq!(map.expiries.len(), 1);
    }

    #[test]
    fn full_board_keeps_the_best_entries() {
        let limits = LocalLimits { board_len_max: 2, ..LocalLimits::default() };
        let mut boards = Boards::default();
        boards.set("b", PlayerId(1), 10.0, limits);
        boards.set("b", PlayerId(2), 20.0, limits);
        boards.set("b", PlayerId(3), 5.0, limits);
        boards.set("b", PlayerId(4), 30.0, limits);
        assert_eq!(boards.range("b", 0, 10), vec![(PlayerId(4), 30.0), (PlayerId(2), 20.0)]);
        assert_eq!(boards.rank("b", PlayerId(1)), None);
    }

    #[test]
    fn board_count_is_bounded() {
        let limits = LocalLimits { boards_max: 2, ..LocalLimits::default() };
        let mut boards = Boards::default();
        boards.set("x", PlayerId(1), 1.0, limits);
        boards.set("y", PlayerId(1), 1.0, limits);
        boards.set("x", PlayerId(2), 1.0, limits);
        boards.set("z", PlayerId(1), 1.0, limits);
        assert_eq!(boards.boards.len(), 2);
        assert!(boards.boards.contains_key("x") && boards.boards.contains_key("z"));
    }

    #[test]
    fn merge_keeps_the_higher_score_and_the_best_entries() {
        let limits = LocalLimits { board_len_max: 3, ..LocalLimits::default() };
        let mut boards = Boards::default();
        boards.set("to", PlayerId(1), 10.0, limits);
        boards.set("to", PlayerId(2), 50.0, limits);
        boards.set("from", PlayerId(1), 40.0, limits);
        boards.set("from", PlayerId(2), 5.0, limits);
        boards.set("from", PlayerId(3), 1.0, limits);
        boards.set("from", PlayerId(4), 2.0, limits);
        boards.move_board("from", "to", limits);
        assert_eq!(boards.range("to", 0, 10), vec![(PlayerId(2), 50.0), (PlayerId(1), 40.0), (PlayerId(4), 2.0)]);
        assert_eq!(boards.rank("to", PlayerId(4)), Some((2, 2.0)));
        assert_eq!(boards.rank("to", PlayerId(3)), None);
        assert!(!boards.boards.contains_key("from"));
    }

    #[test]
    fn name_table_is_bounded_and_names_are_cut_on_a_char_boundary() {
        let coord = LocalCoordinator::with_limits(LocalLimits { names_max: 2, ..LocalLimits::default() });
        coord.names_set_now(&[(PlayerId(1), "a".to_owned()), (PlayerId(2), "b".to_owned())]);
        coord.names_set_now(&[(PlayerId(1), "a2".to_owned()), (PlayerId(3), "é".repeat(70))]);
        let names = coord.names_get_now(&[PlayerId(1), PlayerId(2), PlayerId(3)]);
        assert_eq!(names, vec![Some("a2".to_owned()), None, Some("é".repeat(64))]);
    }

    #[test]
    fn lock_table_is_bounded() {
        let coord = LocalCoordinator::with_limits(LocalLimits { locks_max: 1, ..LocalLimits::default() });
        assert!(coord.try_lock_now("a", 10_000).is_some());
        assert!(coord.try_lock_now("b", 10_000).is_none());
    }
}
