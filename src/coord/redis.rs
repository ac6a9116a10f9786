//! `RedisCoordinator`: the `Coordinator` port on Redis (fred), shared by
//! every instance. Every key lives under a configurable prefix:
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}seen:{key}` | string, `PX` ttl | dedup / idempotency key (`SET NX PX`) |
//! | `{prefix}rate:{key}` | counter, `PX` window | fixed-window rate limit (Lua: `INCR` + `PEXPIRE`) |
//! | `{prefix}lock:{key}` | string token, `PX` ttl | lock (`SET NX PX`; compare-and-delete Lua unlock) |
//! | `{prefix}prices` | JSON `PricesUpdate` | latest quotes; also `PUBLISH`ed on the channel of the same name |
//! | `{prefix}board:{board}` | sorted set | leaderboard (`ZADD`, `ZREVRANGE`, `ZCARD`, `ZREM`, `DEL`; moves by Lua: `ZUNIONSTORE … AGGREGATE MAX` + `DEL`) |
//! | `{prefix}names` | hash, player id (decimal) → name | display names for boards (`HSET`, `HMGET`) |
//!
//! Board members are player ids encoded so that Redis's own tie order (equal
//! scores by member, descending) puts the lower player id first: the member
//! is the 20-digit decimal of `!(id ^ i64::MIN)` as `u64`. So the order is
//! total and the same as the local adapter's.
//!
//! Every call is bounded by the command timeout and fails at once while the
//! client is disconnected, so an outage never hangs a caller; fred's
//! reconnect policy brings the connection back when Redis answers again.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::domain::ids::PlayerId;
use actors::ports::BoxFuture;
use actors::ports::coordinator::{BoardScore, CoordError, Coordinator, LockToken, PricesUpdate, RateDecision};
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, Expiration, HashesInterface, KeysInterface, PubsubInterface,
    ReconnectPolicy, SetOptions, SortedSetsInterface, Value,
};
use fred::types::scripts::Script;
use fred::types::{ConnectHandle, Message};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::local::{bounded_name, checked_score, random_token};

/// Names sent in one `HSET` / asked in one `HMGET` at most; longer calls
/// are split into several commands (not atomic as a whole).
const NAMES_PER_COMMAND_MAX: usize = 1_000;

/// Connection settings of a `RedisCoordinator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisOptions {
    /// Upper bound on every command, round trip included.
    pub command_timeout_ms: u64,
    /// How long `connect` (and `subscribe_prices`) wait for the first
    /// connection before returning anyway (reconnection goes on behind).
    pub connect_wait_ms: u64,
    /// Bound on opening one TCP connection.
    pub connection_timeout_ms: u64,
    /// Reconnect backoff: first delay, doubling up to the max.
    pub reconnect_delay_min_ms: u32,
    pub reconnect_delay_max_ms: u32,
    /// Commands queued in the client at most; past it they fail at once.
    pub command_queue_len_max: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            command_timeout_ms: 250,
            connect_wait_ms: 1_000,
            connection_timeout_ms: 1_000,
            reconnect_delay_min_ms: 50,
            reconnect_delay_max_ms: 2_000,
            command_queue_len_max: 10_000,
        }
    }
}

/// The `Coordinator` shared by every instance through Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    client: fred::prelude::Client,
    connection: ConnectHandle,
    config: Config,
    options: RedisOptions,
    prefix: String,
    timeout: Duration,
    scripts: Scripts,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the routing task and with it the connection (no reconnecting forever).
        self.connection.abort();
    }
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator")
            .field("prefix", &self.inner.prefix)
            .field("state", &self.inner.client.state())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Scripts {
    mark: Script,
    rate: Script,
    unlock: Script,
    rank: Script,
    board_move: Script,
}

/// Marks every key for ARGV[1] ms (one command for a whole batch).
const MARK_LUA: &str = r"
for _, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'PX', ARGV[1])
end
return #KEYS
";

/// Counts one action in the key's window, starting the window on its first
/// action. Returns `{count, window ms left}`.
const RATE_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// Deletes the lock only if it still holds the caller's token.
const UNLOCK_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A member's 0-based rank (best first) and score, or nil.
const RANK_LUA: &str = r"
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then return false end
return {rank, redis.call('ZSCORE', KEYS[1], ARGV[1])}
";

/// Merges board `KEYS[1]` into `KEYS[2]` (higher score wins) and deletes
/// `KEYS[1]`, atomically; nothing when both are the same key.
const BOARD_MOVE_LUA: &str = r"
if KEYS[1] == KEYS[2] then return 0 end
redis.call('ZUNIONSTORE', KEYS[2], 2, KEYS[2], KEYS[1], 'AGGREGATE', 'MAX')
redis.call('DEL', KEYS[1])
return 1
";

impl RedisCoordinator {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`) with
    /// every key under `prefix`, using the default options. Call it inside
    /// the runtime that will use it (fred clients belong to the runtime
    /// that created them). A Redis that is down is not an error: calls
    /// answer `Unavailable` until it is back. Fails only on a bad URL.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CoordError> {
        Self::connect_with(url, prefix, RedisOptions::default()).await
    }

    /// `connect` with explicit options.
    pub async fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<Self, CoordError> {
        let config = Config::from_url(url).map_err(|e| unavailable("invalid redis url", &e))?;
        let client = build(&config, options).build().map_err(|e| unavailable("redis client", &e))?;
        let mut errors = client.error_rx();
        let connection = client.connect();
        wait_connected(&client, &mut errors, options).await;
        let scripts = Scripts {
            mark: Script::from_lua(MARK_LUA),
            rate: Script::from_lua(RATE_LUA),
            unlock: Script::from_lua(UNLOCK_LUA),
            rank: Script::from_lua(RANK_LUA),
            board_move: Script::from_lua(BOARD_MOVE_LUA),
        };
        let inner = Inner {
            client,
            connection,
            config,
            options,
            prefix: prefix.to_owned(),
            timeout: Duration::from_millis(options.command_timeout_ms.max(1)),
            scripts,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether the client is connected right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.inner.client.is_connected()
    }

    /// Price updates published by any instance on this prefix (this one
    /// included), over a dedicated subscriber connection that resubscribes
    /// by itself after a reconnect. Waits up to `connect_wait_ms` for the
    /// subscription to be active; updates published before that are missed.
    pub async fn subscribe_prices(&self) -> Result<PriceSubscription, CoordError> {
        let options = self.inner.options;
        let client =
            build(&self.inner.config, options).build().map_err(|e| unavailable("redis subscriber client", &e))?;
        let channel = self.prices_key();
        let messages = client.message_rx();
        let mut reconnects = client.reconnect_rx();
        let mut errors = client.error_rx();
        let (active_tx, mut active_rx) = watch::channel(false);
        let resubscriber = {
            let client = client.clone();
            let channel = channel.clone();
            tokio::spawn(async move {
                // Every (re)connection starts without subscriptions.
                loop {
                    match reconnects.recv().await {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                    match client.subscribe(channel.clone()).await {
                        Ok(()) => {
                            let _ = active_tx.send(true);
                        }
                        Err(error) => tracing::warn!(%error, "redis price subscription failed; retried on reconnect"),
                    }
                }
            })
        };
        let connection = client.connect();
        let connected = wait_connected(&client, &mut errors, options).await;
        let wait = Duration::from_millis(if connected { options.connect_wait_ms } else { 0 });
        if tokio::time::timeout(wait, active_rx.wait_for(|active| *active)).await.is_err() {
            tracing::warn!("redis price subscription not active yet; it will be once redis answers");
        }
        Ok(PriceSubscription { client, connection, resubscriber, messages, channel })
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.inner.prefix)
    }

    fn names_key(&self) -> String {
        format!("{}names", self.inner.prefix)
    }

    fn prices_key(&self) -> String {
        format!("{}prices", self.inner.prefix)
    }

    /// Entries by board key, each as (its place in `scores`, score, member),
    /// in order; an entry whose score is not a number refuses them all.
    #[allow(clippy::type_complexity)]
    fn by_board(&self, scores: &[BoardScore]) -> Result<BTreeMap<String, Vec<(usize, f64, String)>>, CoordError> {
        let mut grouped: BTreeMap<String, Vec<(usize, f64, String)>> = BTreeMap::new();
        for (index, entry) in scores.iter().enumerate() {
            let score = checked_score(entry.score)?;
            grouped.entry(self.key("board", &entry.board)).or_default().push((index, score, member(entry.player)));
        }
        Ok(grouped)
    }

    /// Runs `call` on the client unless it is disconnected, within the timeout.
    fn run<T, F, Fut>(&self, call: F) -> BoxFuture<Result<T, CoordError>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, CoordError>> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            if !inner.client.is_connected() {
                return Err(CoordError::Unavailable(format!("redis not connected ({:?})", inner.client.state())));
            }
            let timeout = inner.timeout;
            match tokio::time::timeout(timeout, call(inner)).await {
                Ok(result) => result,
                Err(_) => Err(CoordError::Unavailable(format!("redis timed out after {} ms", timeout.as_millis()))),
            }
        })
    }
}

impl Coordinator for RedisCoordinator {
    fn first_seen(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<bool, CoordError>> {
        let key = self.key("seen", key);
        self.run(move |inner| async move {
            let set: Value = inner
                .client
                .set(key, 1, Some(Expiration::PX(px(ttl_ms))), Some(SetOptions::NX), false)
                .await
                .map_err(|e| unavailable("redis SET NX", &e))?;
            Ok(!set.is_null())
        })
    }

    fn seen(&self, key: &str) -> BoxFuture<Result<bool, CoordError>> {
        let key = self.key("seen", key);
        self.run(move |inner| async move {
            let found: i64 = inner.client.exists(key).await.map_err(|e| unavailable("redis EXISTS", &e))?;
            Ok(found > 0)
        })
    }

    fn seen_many(&self, keys: Vec<String>) -> BoxFuture<Result<Vec<bool>, CoordError>> {
        let keys: Vec<String> = keys.iter().map(|key| self.key("seen", key)).collect();
        self.run(move |inner| async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let found: Vec<Value> = inner.client.mget(keys).await.map_err(|e| unavailable("redis MGET", &e))?;
            Ok(found.iter().map(|value| !value.is_null()).collect())
        })
    }

    fn mark_many(&self, keys: Vec<String>, ttl_ms: u64) -> BoxFuture<Result<(), CoordError>> {
        let keys: Vec<String> = keys.iter().map(|key| self.key("seen", key)).collect();
        self.run(move |inner| async move {
            if keys.is_empty() {
                return Ok(());
            }
            let _: i64 = inner
                .scripts
                .mark
                .evalsha_with_reload(&inner.client, keys, px(ttl_ms))
                .await
                .map_err(|e| unavailable("redis mark", &e))?;
            Ok(())
        })
    }

    fn rate_limit(&self, key: &str, limit: u32, window_ms: u64) -> BoxFuture<Result<RateDecision, CoordError>> {
        let key = self.key("rate", key);
        self.run(move |inner| async move {
            let (count, left_ms): (i64, i64) = inner
                .scripts
                .rate
                .evalsha_with_reload(&inner.client, key, px(window_ms))
                .await
                .map_err(|e| unavailable("redis rate limit", &e))?;
            if count <= i64::from(limit) {
                Ok(RateDecision::Allowed)
            } else {
                Ok(RateDecision::Throttled { retry_after_ms: u64::try_from(left_ms).unwrap_or(1).max(1) })
            }
        })
    }

    fn try_lock(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<Option<LockToken>, CoordError>> {
        let key = self.key("lock", key);
        self.run(move |inner| async move {
            let token = random_token();
            let set: Value = inner
                .client
                .set(key, token.as_str(), Some(Expiration::PX(px(ttl_ms))), Some(SetOptions::NX), false)
                .await
                .map_err(|e| unavailable("redis lock", &e))?;
            Ok((!set.is_null()).then_some(LockToken(token)))
        })
    }

    fn unlock(&self, key: &str, token: LockToken) -> BoxFuture<Result<(), CoordError>> {
        let key = self.key("lock", key);
        self.run(move |inner| async move {
            let _: i64 = inner
                .scripts
                .unlock
                .evalsha_with_reload(&inner.client, key, token.0)
                .await
                .map_err(|e| unavailable("redis unlock", &e))?;
            Ok(())
        })
    }

    fn publish_prices(&self, update: PricesUpdate) -> BoxFuture<Result<(), CoordError>> {
        let key = self.prices_key();
        self.run(move |inner| async move {
            let json = serde_json::to_string(&update)
                .map_err(|e| CoordError::Unavailable(format!("prices not serializable: {e}")))?;
            let pipeline = inner.client.pipeline();
            let queued: Result<(), fred::error::Error> = async {
                let () = pipeline.set(key.as_str(), json.as_str(), None, None, false).await?;
                let () = pipeline.publish(key.as_str(), json.as_str()).await?;
                Ok(())
            }
            .await;
            queued.map_err(|e| unavailable("redis publish", &e))?;
            let _: Vec<Value> = pipeline.all().await.map_err(|e| unavailable("redis publish", &e))?;
            Ok(())
        })
    }

    fn latest_prices(&self) -> BoxFuture<Result<Option<PricesUpdate>, CoordError>> {
        let key = self.prices_key();
        self.run(move |inner| async move {
            let json: Option<String> = inner.client.get(key).await.map_err(|e| unavailable("redis GET", &e))?;
            json.map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| CoordError::Unavailable(format!("stored prices unreadable: {e}")))
            })
            .transpose()
        })
    }

    fn board_set(&self, board: &str, player: PlayerId, score: f64) -> BoxFuture<Result<(), CoordError>> {
        let key = self.key("board", board);
        let score = checked_score(score);
        self.run(move |inner| async move {
            let score = score?;
            let _: Value = inner
                .client
                .zadd(key, None, None, false, false, (score, member(player)))
                .await
                .map_err(|e| unavailable("redis ZADD", &e))?;
            Ok(())
        })
    }

    fn boards_set(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<(), CoordError>> {
        let grouped = self.by_board(&scores);
        self.run(move |inner| async move {
            let grouped = grouped?;
            if grouped.is_empty() {
                return Ok(());
            }
            let pipeline = inner.client.pipeline();
            for (key, members) in grouped {
                let members: Vec<(f64, String)> =
                    members.into_iter().map(|(_, score, member)| (score, member)).collect();
                let () = pipeline
                    .zadd(key, None, None, false, false, members)
                    .await
                    .map_err(|e| unavailable("redis ZADD", &e))?;
            }
            let _: Vec<Value> = pipeline.all().await.map_err(|e| unavailable("redis ZADD", &e))?;
            Ok(())
        })
    }

    fn boards_set_absent(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<Vec<f64>, CoordError>> {
        let grouped = self.by_board(&scores);
        let count = scores.len();
        self.run(move |inner| async move {
            let grouped = grouped?;
            let mut kept = vec![0.0; count];
            if grouped.is_empty() {
                return Ok(kept);
            }
            // Per board: ZADD NX, then ZMSCORE of the same members (what
            // stands now, old or new), all in one pipeline.
            let pipeline = inner.client.pipeline();
            for (key, members) in &grouped {
                let scored: Vec<(f64, String)> =
                    members.iter().map(|(_, score, member)| (*score, member.clone())).collect();
                let names: Vec<String> = members.iter().map(|(_, _, member)| member.clone()).collect();
                let () = pipeline
                    .zadd(key.as_str(), Some(SetOptions::NX), None, false, false, scored)
                    .await
                    .map_err(|e| unavailable("redis ZADD NX", &e))?;
                let () = pipeline.zmscore(key.as_str(), names).await.map_err(|e| unavailable("redis ZMSCORE", &e))?;
            }
            let replies: Vec<Value> = pipeline.all().await.map_err(|e| unavailable("redis ZADD NX", &e))?;
            let bad = || CoordError::Unavailable("redis ZMSCORE: unexpected reply".to_owned());
            for ((_, members), reply) in grouped.iter().zip(replies.into_iter().skip(1).step_by(2)) {
                let reply = reply.into_array();
                if reply.len() != members.len() {
                    return Err(bad());
                }
                for ((index, _, _), score) in members.iter().zip(reply) {
                    let slot = kept.get_mut(*index).ok_or_else(bad)?;
                    *slot = score.as_f64().ok_or_else(bad)?;
                }
            }
            Ok(kept)
        })
    }

    fn board_range(&self, board: &str, offset: u64, limit: u64) -> BoxFuture<Result<Vec<(PlayerId, f64)>, CoordError>> {
        let key = self.key("board", board);
        self.run(move |inner| async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let start = i64::try_from(offset).unwrap_or(i64::MAX);
            let stop = i64::try_from(offset.saturating_add(limit - 1)).unwrap_or(i64::MAX);
            let range: Value =
                inner.client.zrevrange(key, start, stop, true).await.map_err(|e| unavailable("redis ZREVRANGE", &e))?;
            scored_members(range)
        })
    }

    fn board_rank(&self, board: &str, player: PlayerId) -> BoxFuture<Result<Option<(u64, f64)>, CoordError>> {
        let key = self.key("board", board);
        self.run(move |inner| async move {
            let reply: Value = inner
                .scripts
                .rank
                .evalsha_with_reload(&inner.client, key, member(player))
                .await
                .map_err(|e| unavailable("redis board rank", &e))?;
            if reply.is_null() {
                return Ok(None);
            }
            match reply.into_array().as_slice() {
                [rank, score] => match (rank.as_i64().and_then(|r| u64::try_from(r).ok()), score.as_f64()) {
                    (Some(rank), Some(score)) => Ok(Some((rank, score))),
                    _ => Err(CoordError::Unavailable("redis board rank: unreadable reply".to_owned())),
                },
                _ => Err(CoordError::Unavailable("redis board rank: unexpected reply".to_owned())),
            }
        })
    }

    fn board_count(&self, board: &str) -> BoxFuture<Result<u64, CoordError>> {
        let key = self.key("board", board);
        self.run(move |inner| async move {
            let count: i64 = inner.client.zcard(key).await.map_err(|e| unavailable("redis ZCARD", &e))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn board_remove(&self, board: &str, player: PlayerId) -> BoxFuture<Result<(), CoordError>> {
        let key = self.key("board", board);
        self.run(move |inner| async move {
            let _: i64 = inner.client.zrem(key, member(player)).await.map_err(|e| unavailable("redis ZREM", &e))?;
            Ok(())
        })
    }

    fn board_move(&self, from: &str, to: &str) -> BoxFuture<Result<(), CoordError>> {
        let keys = vec![self.key("board", from), self.key("board", to)];
        self.run(move |inner| async move {
            let _: i64 = inner
                .scripts
                .board_move
                .evalsha_with_reload(&inner.client, keys, ())
                .await
                .map_err(|e| unavailable("redis board move", &e))?;
            Ok(())
        })
    }

    fn board_clear(&self, board: &str) -> BoxFuture<Result<(), CoordError>> {
        let key = self.key("board", board);
        self.run(move |inner| async move {
            let _: i64 = inner.client.del(key).await.map_err(|e| unavailable("redis DEL", &e))?;
            Ok(())
        })
    }

    fn names_set(&self, entries: Vec<(PlayerId, String)>) -> BoxFuture<Result<(), CoordError>> {
        let key = self.names_key();
        self.run(move |inner| async move {
            for chunk in entries.chunks(NAMES_PER_COMMAND_MAX) {
                // Later entries overwrite earlier ones, within a chunk as across chunks.
                let fields: Vec<(String, String)> =
                    chunk.iter().map(|(player, name)| (player.0.to_string(), bounded_name(name))).collect();
                let _: i64 =
                    inner.client.hset(key.as_str(), fields).await.map_err(|e| unavailable("redis HSET", &e))?;
            }
            Ok(())
        })
    }

    fn names_get(&self, players: Vec<PlayerId>) -> BoxFuture<Result<Vec<Option<String>>, CoordError>> {
        let key = self.names_key();
        self.run(move |inner| async move {
            let mut names = Vec::with_capacity(players.len());
            for chunk in players.chunks(NAMES_PER_COMMAND_MAX) {
                let fields: Vec<String> = chunk.iter().map(|player| player.0.to_string()).collect();
                let reply: Value =
                    inner.client.hmget(key.as_str(), fields).await.map_err(|e| unavailable("redis HMGET", &e))?;
                let replies = match reply {
                    Value::Array(replies) => replies,
                    _ => return Err(CoordError::Unavailable("redis HMGET: unexpected reply".to_owned())),
                };
                if replies.len() != chunk.len() {
                    return Err(CoordError::Unavailable("redis HMGET: reply length differs".to_owned()));
                }
                for name in replies {
                    match name {
                        Value::Null => names.push(None),
                        name => names.push(Some(
                            name.as_string()
                                .ok_or_else(|| CoordError::Unavailable("redis HMGET: unreadable name".to_owned()))?,
                        )),
                    }
                }
            }
            Ok(names)
        })
    }

    fn ping(&self) -> BoxFuture<Result<(), CoordError>> {
        self.run(|inner| async move {
            let _: Value = inner.client.ping(None).await.map_err(|e| unavailable("redis PING", &e))?;
            Ok(())
        })
    }
}

/// Price updates received from Redis pub/sub. Dropping it closes its connection.
pub struct PriceSubscription {
    client: fred::prelude::Client,
    connection: ConnectHandle,
    resubscriber: JoinHandle<()>,
    messages: broadcast::Receiver<Message>,
    channel: String,
}

impl std::fmt::Debug for PriceSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceSubscription").field("channel", &self.channel).finish_non_exhaustive()
    }
}

impl PriceSubscription {
    /// The next update; `None` once the subscription is closed. Updates
    /// missed by a slow reader are skipped (with a warning), so this always
    /// moves toward the newest.
    pub async fn recv(&mut self) -> Option<PricesUpdate> {
        loop {
            match self.messages.recv().await {
                Ok(message) => {
                    if *message.channel != *self.channel {
                        continue;
                    }
                    let Some(json) = message.value.as_str() else { continue };
                    match serde_json::from_str(&json) {
                        Ok(update) => return Some(update),
                        Err(error) => tracing::warn!(%error, "unreadable price update on redis; skipped"),
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "price subscriber fell behind; skipped to the newest");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Whether the subscriber connection is up right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }
}

impl Drop for PriceSubscription {
    fn drop(&mut self) {
        self.resubscriber.abort();
        self.connection.abort();
    }
}

/// Builder shared by the command and subscriber clients.
fn build(config: &Config, options: RedisOptions) -> Builder {
    let mut builder = Builder::from_config(config.clone());
    builder
        .with_config(|config| {
            // A Redis that is down at start is retried like one that went away.
            config.fail_fast = false;
        })
        .with_performance_config(|perf| {
            perf.default_command_timeout = Duration::from_millis(options.command_timeout_ms.max(1));
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_millis(options.connection_timeout_ms.max(1));
            conn.internal_command_timeout = Duration::from_millis(options.connection_timeout_ms.max(1));
            conn.max_command_buffer_len = options.command_queue_len_max;
            // A connection that stops answering is dropped and reconnected.
            conn.unresponsive.max_timeout = Some(Duration::from_millis(options.connection_timeout_ms.max(1) * 2));
            conn.unresponsive.interval = Duration::from_millis(options.connection_timeout_ms.max(2) / 2);
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            options.reconnect_delay_min_ms.max(1),
            options.reconnect_delay_max_ms.max(options.reconnect_delay_min_ms.max(1)),
            2,
        ));
    builder
}

/// Waits up to `connect_wait_ms` for the client to connect, returning early
/// when the first attempt fails (the reconnect policy goes on behind).
/// Whether it is connected.
async fn wait_connected(
    client: &fred::prelude::Client,
    errors: &mut broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    options: RedisOptions,
) -> bool {
    let deadline = Instant::now() + Duration::from_millis(options.connect_wait_ms);
    while !client.is_connected() && Instant::now() < deadline {
        match errors.try_recv() {
            Ok((error, _)) => {
                tracing::warn!(%error, "redis not reachable yet; reconnecting in the background");
                break;
            }
            Err(broadcast::error::TryRecvError::Lagged(_)) => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    client.is_connected()
}

fn unavailable(what: &str, error: &fred::error::Error) -> CoordError {
    CoordError::Unavailable(format!("{what}: {error}"))
}

/// A TTL in ms as Redis takes it (at least 1).
fn px(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms.max(1)).unwrap_or(i64::MAX)
}

/// The board member of a player: lexically descending = id ascending.
fn member(player: PlayerId) -> String {
    format!("{:020}", !((player.0 as u64) ^ (1 << 63)))
}

/// `[member, score, …]` (RESP2) or `[[member, score], …]` (RESP3), in
/// reply order (fred's `into_zset_result` reverses it).
fn scored_members(reply: Value) -> Result<Vec<(PlayerId, f64)>, CoordError> {
    let bad = || CoordError::Unavailable("redis board range: unexpected reply".to_owned());
    let mut flat = Vec::new();
    for item in reply.into_array() {
        match item {
            Value::Array(pair) => flat.extend(pair),
            Value::Null => {}
            other => flat.push(other),
        }
    }
    let mut items = flat.into_iter();
    let mut out = Vec::with_capacity(items.len() / 2);
    while let Some(name) = items.next() {
        let score = items.next().and_then(|score| score.as_f64()).ok_or_else(bad)?;
        out.push((player_of(&name)?, score));
    }
    Ok(out)
}

fn player_of(member: &Value) -> Result<PlayerId, CoordError> {
    let encoded = member
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CoordError::Unavailable(format!("redis board: foreign member {member:?}")))?;
    Ok(PlayerId((!encoded ^ (1 << 63)) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_encoding_round_trips_and_orders_ids_descending() {
        let ids = [i64::MIN, -5, -1, 0, 1, 7, 42, i64::MAX];
        for id in ids {
            assert_eq!(player_of(&Value::from(member(PlayerId(id)))).unwrap(), PlayerId(id));
        }
        for pair in ids.windows(2) {
            assert!(member(PlayerId(pair[0])) > member(PlayerId(pair[1])));
        }
    }
}
