//! `FallbackCoordinator`: Redis first, local state when Redis fails. Each
//! call that Redis cannot answer is answered by the `LocalCoordinator`, so
//! rate limits, dedup and locks keep working on one instance during an
//! outage. After a failure Redis is skipped for `retry_after_failure_ms`
//! (so a hung Redis costs one timeout per period, not one per call), then
//! tried again: no failure is sticky. A warning is logged at most once per
//! `warn_interval_ms`, and recovery once.
//!
//! While Redis answers, dedup keys, rate counts, the latest prices and
//! display names are also written through to local state, so that the
//! first calls of an outage still know what this instance saw just before
//! it. Board scores and locks are not mirrored: during an outage they hold
//! only what this instance wrote since. Board removals, moves and clears
//! are applied to the local boards too, so that an entry taken off a board
//! through Redis (a season archived, a group migrated) does not come back
//! from local state in a later outage.

use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use actors::domain::ids::PlayerId;
use actors::ports::BoxFuture;
use actors::ports::coordinator::{BoardScore, CoordError, Coordinator, LockToken, PricesUpdate, RateDecision};
use tokio::sync::broadcast;

use super::local::{LocalCoordinator, checked_score};
use super::redis::{PriceSubscription, RedisCoordinator};

/// When the fallback logs and retries Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackOptions {
    /// At most one "Redis unavailable" warning per this period.
    pub warn_interval_ms: u64,
    /// After a Redis failure, calls go straight to local state for this long.
    pub retry_after_failure_ms: u64,
}

impl Default for FallbackOptions {
    fn default() -> Self {
        Self { warn_interval_ms: 30_000, retry_after_failure_ms: 500 }
    }
}

/// Redis with a local fallback. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FallbackCoordinator {
    redis: RedisCoordinator,
    local: Arc<LocalCoordinator>,
    health: Arc<Health>,
}

#[derive(Debug)]
struct Health {
    options: FallbackOptions,
    epoch: Instant,
    /// Ms since `epoch` before which Redis is not tried.
    skip_until_ms: AtomicU64,
    /// Ms since `epoch` of the last warning, `u64::MAX` for never.
    warned_at_ms: AtomicU64,
    degraded: AtomicBool,
}

const NEVER: u64 = u64::MAX;

impl Health {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn redis_worth_trying(&self) -> bool {
        self.now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, error: &CoordError) {
        let now = self.now_ms();
        self.skip_until_ms.store(now.saturating_add(self.options.retry_after_failure_ms), Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
        let warned = self.warned_at_ms.load(Ordering::Relaxed);
        let due = warned == NEVER || now.saturating_sub(warned) >= self.options.warn_interval_ms;
        if due && self.warned_at_ms.compare_exchange(warned, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(%error, "redis coordinator unavailable; answering from local state");
        }
    }

    fn answered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("redis coordinator answers again");
        }
    }
}

impl FallbackCoordinator {
    /// Redis first, `local` when it fails, with the default options.
    #[must_use]
    pub fn new(redis: RedisCoordinator, local: LocalCoordinator) -> Self {
        Self::with_options(redis, local, FallbackOptions::default())
    }

    /// `new` with explicit options.
    #[must_use]
    pub fn with_options(redis: RedisCoordinator, local: LocalCoordinator, options: FallbackOptions) -> Self {
        let health = Health {
            options,
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(NEVER),
            degraded: AtomicBool::new(false),
        };
        Self { redis, local: Arc::new(local), health: Arc::new(health) }
    }

    /// Connects to Redis at `url` (keys under `prefix`) with a fresh local
    /// fallback. A Redis that is down is not an error.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CoordError> {
        Ok(Self::new(RedisCoordinator::connect(url, prefix).await?, LocalCoordinator::new()))
    }

    /// The Redis side.
    #[must_use]
    pub fn redis(&self) -> &RedisCoordinator {
        &self.redis
    }

    /// The local side.
    #[must_use]
    pub fn local(&self) -> &LocalCoordinator {
        &self.local
    }

    /// Price updates from Redis pub/sub (every instance) and, during an
    /// outage, those this instance published locally.
    pub async fn subscribe_prices(&self) -> Result<FallbackSubscription, CoordError> {
        let local = self.local.subscribe_prices();
        let redis = self.redis.subscribe_prices().await?;
        Ok(FallbackSubscription { redis: Some(redis), local: Some(local) })
    }

    /// Asks Redis (unless it failed just now); on failure answers with
    /// `fallback` from local state. `mirror` sees every Redis answer.
    fn call<T, R, M, F>(&self, redis: R, mirror: M, fallback: F) -> BoxFuture<Result<T, CoordError>>
    where
        T: Send + 'static,
        R: FnOnce(&RedisCoordinator) -> BoxFuture<Result<T, CoordError>>,
        M: FnOnce(&LocalCoordinator, &T) + Send + 'static,
        F: FnOnce(&LocalCoordinator) -> Result<T, CoordError> + Send + 'static,
    {
        let local = Arc::clone(&self.local);
        if !self.health.redis_worth_trying() {
            return Box::pin(ready(fallback(&local)));
        }
        let health = Arc::clone(&self.health);
        let asked = redis(&self.redis);
        Box::pin(async move {
            match asked.await {
                Ok(answer) => {
                    health.answered();
                    mirror(&local, &answer);
                    Ok(answer)
                }
                Err(error) => {
                    health.failed(&error);
                    fallback(&local)
                }
            }
        })
    }
}

impl Coordinator for FallbackCoordinator {
    fn first_seen(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<bool, CoordError>> {
        let owned: Arc<str> = key.into();
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.first_seen(key, ttl_ms),
            move |local, _| {
                local.first_seen_now(&mirrored, ttl_ms);
            },
            move |local| Ok(local.first_seen_now(&owned, ttl_ms)),
        )
    }

    fn seen(&self, key: &str) -> BoxFuture<Result<bool, CoordError>> {
        let owned: Arc<str> = key.into();
        self.call(|redis| redis.seen(key), |_, _| {}, move |local| Ok(local.seen_now(&owned)))
    }

    fn seen_many(&self, keys: Vec<String>) -> BoxFuture<Result<Vec<bool>, CoordError>> {
        let owned: Arc<[String]> = keys.as_slice().into();
        self.call(|redis| redis.seen_many(keys), |_, _| {}, move |local| Ok(local.seen_many_now(&owned)))
    }

    fn mark_many(&self, keys: Vec<String>, ttl_ms: u64) -> BoxFuture<Result<(), CoordError>> {
        let owned: Arc<[String]> = keys.as_slice().into();
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.mark_many(keys, ttl_ms),
            move |local, ()| local.mark_many_now(&mirrored, ttl_ms),
            move |local| {
                local.mark_many_now(&owned, ttl_ms);
                Ok(())
            },
        )
    }

    fn rate_limit(&self, key: &str, limit: u32, window_ms: u64) -> BoxFuture<Result<RateDecision, CoordError>> {
        let owned: Arc<str> = key.into();
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.rate_limit(key, limit, window_ms),
            move |local, _| {
                local.rate_limit_now(&mirrored, limit, window_ms);
            },
            move |local| Ok(local.rate_limit_now(&owned, limit, window_ms)),
        )
    }

    fn try_lock(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<Option<LockToken>, CoordError>> {
        let owned: Arc<str> = key.into();
        self.call(|redis| redis.try_lock(key, ttl_ms), |_, _| {}, move |local| Ok(local.try_lock_now(&owned, ttl_ms)))
    }

    fn unlock(&self, key: &str, token: LockToken) -> BoxFuture<Result<(), CoordError>> {
        // A lock taken locally during an outage is released locally too; a
        // Redis token never matches a local lock, so this is always safe.
        self.local.unlock_now(key, &token);
        self.call(|redis| redis.unlock(key, token), |_, ()| {}, |_| Ok(()))
    }

    fn publish_prices(&self, update: PricesUpdate) -> BoxFuture<Result<(), CoordError>> {
        let mirrored = update.clone();
        let fallback = update.clone();
        self.call(
            |redis| redis.publish_prices(update),
            move |local, ()| local.remember_prices(mirrored),
            move |local| {
                local.publish_prices_now(fallback);
                Ok(())
            },
        )
    }

    fn latest_prices(&self) -> BoxFuture<Result<Option<PricesUpdate>, CoordError>> {
        self.call(|redis| redis.latest_prices(), |_, _| {}, |local| Ok(local.latest_prices_now()))
    }

    fn board_set(&self, board: &str, player: PlayerId, score: f64) -> BoxFuture<Result<(), CoordError>> {
        // A bad score is the caller's mistake, not an outage: refuse it here.
        if let Err(error) = checked_score(score) {
            return Box::pin(ready(Err(error)));
        }
        let owned: Arc<str> = board.into();
        self.call(
            |redis| redis.board_set(board, player, score),
            |_, ()| {},
            move |local| local.board_set_now(&owned, player, score),
        )
    }

    fn boards_set(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<(), CoordError>> {
        if let Some(error) = scores.iter().find_map(|entry| checked_score(entry.score).err()) {
            return Box::pin(ready(Err(error)));
        }
        let owned: Arc<[BoardScore]> = scores.as_slice().into();
        self.call(|redis| redis.boards_set(scores), |_, ()| {}, move |local| local.boards_set_now(&owned))
    }

    fn boards_set_absent(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<Vec<f64>, CoordError>> {
        if let Some(error) = scores.iter().find_map(|entry| checked_score(entry.score).err()) {
            return Box::pin(ready(Err(error)));
        }
        let owned: Arc<[BoardScore]> = scores.as_slice().into();
        self.call(|redis| redis.boards_set_absent(scores), |_, _| {}, move |local| local.boards_set_absent_now(&owned))
    }

    fn board_range(&self, board: &str, offset: u64, limit: u64) -> BoxFuture<Result<Vec<(PlayerId, f64)>, CoordError>> {
        let owned: Arc<str> = board.into();
        self.call(
            |redis| redis.board_range(board, offset, limit),
            |_, _| {},
            move |local| Ok(local.board_range_now(&owned, offset, limit)),
        )
    }

    fn board_rank(&self, board: &str, player: PlayerId) -> BoxFuture<Result<Option<(u64, f64)>, CoordError>> {
        let owned: Arc<str> = board.into();
        self.call(
            |redis| redis.board_rank(board, player),
            |_, _| {},
            move |local| Ok(local.board_rank_now(&owned, player)),
        )
    }

    fn board_count(&self, board: &str) -> BoxFuture<Result<u64, CoordError>> {
        let owned: Arc<str> = board.into();
        self.call(|redis| redis.board_count(board), |_, _| {}, move |local| Ok(local.board_count_now(&owned)))
    }

    fn board_remove(&self, board: &str, player: PlayerId) -> BoxFuture<Result<(), CoordError>> {
        let owned: Arc<str> = board.into();
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.board_remove(board, player),
            move |local, ()| local.board_remove_now(&mirrored, player),
            move |local| {
                local.board_remove_now(&owned, player);
                Ok(())
            },
        )
    }

    fn board_move(&self, from: &str, to: &str) -> BoxFuture<Result<(), CoordError>> {
        let owned: Arc<(String, String)> = Arc::new((from.to_owned(), to.to_owned()));
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.board_move(from, to),
            move |local, ()| local.board_move_now(&mirrored.0, &mirrored.1),
            move |local| {
                local.board_move_now(&owned.0, &owned.1);
                Ok(())
            },
        )
    }

    fn board_clear(&self, board: &str) -> BoxFuture<Result<(), CoordError>> {
        let owned: Arc<str> = board.into();
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.board_clear(board),
            move |local, ()| local.board_clear_now(&mirrored),
            move |local| {
                local.board_clear_now(&owned);
                Ok(())
            },
        )
    }

    fn names_set(&self, entries: Vec<(PlayerId, String)>) -> BoxFuture<Result<(), CoordError>> {
        let owned: Arc<[(PlayerId, String)]> = entries.as_slice().into();
        let mirrored = Arc::clone(&owned);
        self.call(
            |redis| redis.names_set(entries),
            move |local, ()| local.names_set_now(&mirrored),
            move |local| {
                local.names_set_now(&owned);
                Ok(())
            },
        )
    }

    fn names_get(&self, players: Vec<PlayerId>) -> BoxFuture<Result<Vec<Option<String>>, CoordError>> {
        let owned: Arc<[PlayerId]> = players.as_slice().into();
        self.call(|redis| redis.names_get(players), |_, _| {}, move |local| Ok(local.names_get_now(&owned)))
    }

    /// Answers for the pair: the local side always answers, so this is `Ok`
    /// even while Redis is down (ask `redis().ping()` for Redis alone).
    fn ping(&self) -> BoxFuture<Result<(), CoordError>> {
        self.call(|redis| redis.ping(), |_, ()| {}, |_| Ok(()))
    }
}

/// Price updates from Redis and from the local fallback, merged.
#[derive(Debug)]
pub struct FallbackSubscription {
    redis: Option<PriceSubscription>,
    local: Option<broadcast::Receiver<PricesUpdate>>,
}

impl FallbackSubscription {
    /// The next update from either side; `None` once both are closed.
    pub async fn recv(&mut self) -> Option<PricesUpdate> {
        loop {
            match (self.redis.as_mut(), self.local.as_mut()) {
                (None, None) => return None,
                (Some(redis), None) => {
                    let update = redis.recv().await;
                    if update.is_none() {
                        self.redis = None;
                    }
                    return update;
                }
                (None, Some(local)) => match local.recv().await {
                    Ok(update) => return Some(update),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => self.local = None,
                },
                (Some(redis), Some(local)) => {
                    tokio::select! {
                        update = redis.recv() => match update {
                            Some(update) => return Some(update),
                            None => self.redis = None,
                        },
                        update = local.recv() => match update {
                            Ok(update) => return Some(update),
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => self.local = None,
                        },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(options: FallbackOptions) -> Health {
        Health {
            options,
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(NEVER),
            degraded: AtomicBool::new(false),
        }
    }

    #[test]
    fn warns_once_per_interval_and_recovers() {
        let health = health(FallbackOptions { warn_interval_ms: 60_000, retry_after_failure_ms: 60_000 });
        assert!(health.redis_worth_trying());
        let down = CoordError::Unavailable("down".to_owned());
        health.failed(&down);
        let warned = health.warned_at_ms.load(Ordering::Relaxed);
        assert_ne!(warned, NEVER);
        assert!(!health.redis_worth_trying());
        health.failed(&down);
        assert_eq!(health.warned_at_ms.load(Ordering::Relaxed), warned);
        health.answered();
        assert!(!health.degraded.load(Ordering::Relaxed));
    }

    #[test]
    fn failure_is_not_sticky() {
        let health = health(FallbackOptions { warn_interval_ms: 0, retry_after_failure_ms: 0 });
        health.failed(&CoordError::Unavailable("down".to_owned()));
        assert!(health.redis_worth_trying());
    }
}
