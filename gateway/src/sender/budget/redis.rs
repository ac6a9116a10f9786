//! `RedisBudget`: the send budget shared by every sender on one Redis, so
//! that all gateways together keep to Telegram's limits. Keys (under the
//! configured prefix):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}send:global` | sorted set, send times (µs, Redis clock) | the bot-wide window |
//! | `{prefix}send:chat:{chat_id}` | sorted set, send times | one chat's or group's window |
//! | `{prefix}send:seq` | counter, `PX` = two group spans | unique members for the sorted sets |
//! | `{prefix}send:freeze` | string, `PX` = retry_after | every sender waits while it exists |
//! | `{prefix}send:blocked:{chat_id}` | string, `PX` = `BLOCKED_TTL_MS` | the chat blocked the bot |
//!
//! One Lua script takes a whole batch of grants in one round trip,
//! atomically, on Redis's clock (`TIME`), so the senders' clocks never
//! matter. While Redis does not answer (down, or slower than the command
//! timeout), the budget answers from its `LocalBudget`, logs once and says
//! so in `Grants::local`; after `retry_after_failure_ms` it tries Redis again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, EventInterface, Expiration, KeysInterface, ReconnectPolicy};
use fred::types::ConnectHandle;
use fred::types::scripts::Script;

use super::local::LocalBudget;
use super::{Ask, BoxFuture, Grant, Grants, SECOND_MS, Scope, SendBudget, chat_limit, chat_span_ms};
use crate::sender::{BLOCKED_TTL_MS, RateLimits};

/// Takes grants for a batch of chats. KEYS: global, freeze, seq, then the
/// n chat windows, then the n blocked marks. ARGV: global limit, global
/// span ms, n, then per chat its limit, span ms and whether the send
/// replies to the chat (1: its blocked mark is lifted). Returns 2n integers:
/// per chat a kind (0 granted, 1 wait global, 2 wait chat, 3 blocked) and
/// the wait in ms (for a grant: until the chat's window has room again,
/// 0 if it has room now).
const TAKE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[3])
local glimit, gspan = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
local frozen = redis.call('PTTL', KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - gspan * 1000)
local gcount = redis.call('ZCARD', KEYS[1])
local seq = redis.call('INCRBY', KEYS[3], n)
-- Twice the longest span (GROUP_SPAN_MS): the counter restarts only once
-- every window it numbered has expired, so members stay unique.
redis.call('PEXPIRE', KEYS[3], 120000)
local gwait = 0
local granted = {}
-- The batch's grants enter the global window in one command.
local function count_granted()
  if #granted > 0 then
    redis.call('ZADD', KEYS[1], unpack(granted))
    redis.call('PEXPIRE', KEYS[1], gspan)
    granted = {}
  end
end
local function wait_of(key, span)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local left = tonumber(oldest[2]) + span * 1000 - now
  return math.max(1, math.ceil(left / 1000))
end
for i = 1, n do
  local limit, span = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
  local chat, blocked = KEYS[3 + i], KEYS[3 + n + i]
  if ARGV[3 + 3 * i] == '1' then
    redis.call('DEL', blocked)
  end
  if ARGV[3 + 3 * i] ~= '1' and redis.call('EXISTS', blocked) == 1 then
    out[#out + 1] = 3; out[#out + 1] = 0
  elseif frozen > 0 then
    out[#out + 1] = 1; out[#out + 1] = frozen
  elseif gcount >= glimit then
    if gwait == 0 then
      count_granted()
      gwait = wait_of(KEYS[1], gspan)
    end
    out[#out + 1] = 1; out[#out + 1] = gwait
  else
    redis.call('ZREMRANGEBYSCORE', chat, '-inf', now - span * 1000)
    local count = redis.call('ZCARD', chat)
    if count >= limit then
      out[#out + 1] = 2; out[#out + 1] = wait_of(chat, span)
    else
      local member = tostring(seq - n + i)
      redis.call('ZADD', chat, now, member)
      redis.call('PEXPIRE', chat, span)
      granted[#granted + 1] = now
      granted[#granted + 1] = member
      gcount = gcount + 1
      local next = 0
      if count + 1 >= limit then next = wait_of(chat, span) end
      out[#out + 1] = 0; out[#out + 1] = next
    end
  end
end
count_granted()
return out
";

/// Sets the freeze for ARGV[1] ms unless a longer one is on.
const FREEZE_LUA: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return 1
end
return 0
";

/// Connection and fallback settings of a `RedisBudget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisBudgetOptions {
    /// Upper bound on one Redis call, round trip included.
    pub command_timeout_ms: u64,
    /// How long `connect` waits for the first connection (reconnection goes on behind).
    pub connect_wait_ms: u64,
    /// Bound on opening one TCP connection.
    pub connection_timeout_ms: u64,
    /// After a failed call, calls go straight to the local budget for this long.
    pub retry_after_failure_ms: u64,
}

impl Default for RedisBudgetOptions {
    fn default() -> Self {
        Self {
            command_timeout_ms: 250,
            connect_wait_ms: 1_000,
            connection_timeout_ms: 1_000,
            retry_after_failure_ms: 500,
        }
    }
}

/// How long a sender on a shared budget trusts its own memory of a blocked
/// chat before asking the budget again (another instance may have seen the
/// user write again and lifted the mark).
const BLOCKED_CACHE_SHARED_MS: u64 = 5_000;

/// The send budget shared through Redis, with a local fallback. Cheap to clone.
#[derive(Clone)]
pub struct RedisBudget {
    inner: Arc<Inner>,
}

struct Inner {
    client: fred::prelude::Client,
    connection: ConnectHandle,
    prefix: String,
    limits: RateLimits,
    options: RedisBudgetOptions,
    take: Script,
    freeze: Script,
    local: LocalBudget,
    /// Redis is not tried before then.
    skip_until: Mutex<Option<Instant>>,
    /// The last call failed (the outage was logged).
    degraded: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the routing task and with it the reconnecting.
        self.connection.abort();
    }
}

impl std::fmt::Debug for RedisBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudget").field("prefix", &self.inner.prefix).finish_non_exhaustive()
    }
}

impl RedisBudget {
    /// Connects to `url` with the budget's keys under `{prefix}send:`. Call
    /// it inside the runtime that will use it. A Redis that is down is not
    /// an error (the local budget answers until it is back); only a bad URL is.
    ///
    /// # Errors
    /// An unusable URL or client configuration.
    pub async fn connect(
        url: &str,
        prefix: &str,
        limits: RateLimits,
        options: RedisBudgetOptions,
    ) -> Result<Self, String> {
        let config = Config::from_url(url).map_err(|error| format!("invalid redis url: {error}"))?;
        let client = build(config, options).build().map_err(|error| format!("redis client: {error}"))?;
        let connection = client.connect();
        let deadline = Instant::now() + Duration::from_millis(options.connect_wait_ms);
        let mut errors = client.error_rx();
        while !client.is_connected() && Instant::now() < deadline {
            if errors.try_recv().is_ok() {
                tracing::warn!("redis not reachable yet; the send budget is local until it is");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let inner = Inner {
            client,
            connection,
            prefix: format!("{prefix}send:"),
            limits,
            options,
            take: Script::from_lua(TAKE_LUA),
            freeze: Script::from_lua(FREEZE_LUA),
            local: LocalBudget::new(limits),
            skip_until: Mutex::new(None),
            degraded: AtomicBool::new(false),
        };
        Ok(Self { inner: Arc::new(inner) })
    }
}

impl Inner {
    fn key(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    /// Whether the last failure is long enough ago to try Redis again.
    fn worth_trying(&self) -> bool {
        let skip = *self.skip_until.lock().unwrap_or_else(PoisonError::into_inner);
        skip.is_none_or(|until| Instant::now() >= until)
    }

    fn failed(&self, what: &str, error: &str) {
        let retry = Instant::now() + Duration::from_millis(self.options.retry_after_failure_ms);
        *self.skip_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(retry);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(what, error, "redis send budget unavailable; sending on the local budget");
        }
    }

    fn answered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("redis send budget answers again");
        }
    }

    /// Runs `call` against Redis within the command timeout; `None` (and
    /// the outage noted) when Redis is skipped, fails or is too slow.
    async fn call<T, F>(&self, what: &str, call: F) -> Option<T>
    where
        F: Future<Output = Result<T, fred::error::Error>>,
    {
        if !self.worth_trying() {
            return None;
        }
        if !self.client.is_connected() {
            // Fails at once rather than queueing behind the reconnection.
            self.failed(what, "not connected");
            return None;
        }
        let timeout = Duration::from_millis(self.options.command_timeout_ms.max(1));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => {
                self.answered();
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(what, &error.to_string());
                None
            }
            Err(_) => {
                self.failed(what, "timed out");
                None
            }
        }
    }

    async fn take(&self, asks: Vec<Ask>, now: Instant) -> Grants {
        let n = asks.len();
        let mut keys = Vec::with_capacity(3 + 2 * n);
        keys.extend([self.key("global"), self.key("freeze"), self.key("seq")]);
        keys.extend(asks.iter().map(|ask| self.key(&format!("chat:{}", ask.chat))));
        keys.extend(asks.iter().map(|ask| self.key(&format!("blocked:{}", ask.chat))));
        let mut args: Vec<i64> = Vec::with_capacity(3 + 3 * n);
        args.extend([i64::from(self.limits.global_per_sec.max(1)), ms_i64(SECOND_MS), i64::try_from(n).unwrap_or(0)]);
        for ask in &asks {
            let chat = ask.chat;
            args.extend([
                i64::from(chat_limit(&self.limits, chat).max(1)),
                ms_i64(chat_span_ms(chat)),
                i64::from(ask.replying),
            ]);
        }
        let reply: Option<Vec<i64>> = self.call("take", self.take.evalsha_with_reload(&self.client, keys, args)).await;
        match reply.and_then(|reply| decode(&reply, n, Instant::now())) {
            Some(grants) => {
                for (ask, grant) in asks.iter().zip(&grants) {
                    match grant {
                        Grant::Granted { .. } => {
                            if ask.replying {
                                self.local.clear(ask.chat);
                            }
                            self.local.record(ask.chat, now);
                        }
                        Grant::Blocked => self.local.mark(ask.chat, now),
                        Grant::Wait { .. } => {}
                    }
                }
                Grants { grants, local: false }
            }
            None => Grants { grants: self.local.take(&asks, now), local: true },
        }
    }

    async fn freeze(&self, retry_after: Duration, now: Instant) {
        self.local.freeze_until(now + retry_after);
        let px = ms_i64(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1));
        let _: Option<i64> =
            self.call("freeze", self.freeze.evalsha_with_reload(&self.client, self.key("freeze"), px)).await;
    }

    async fn is_frozen(&self, now: Instant) -> bool {
        let ttl: Option<i64> = self.call("is_frozen", self.client.pttl(self.key("freeze"))).await;
        ttl.map_or_else(|| self.local.frozen_until(now).is_some(), |ttl| ttl > 0)
    }

    async fn mark_blocked(&self, chat_id: i64, now: Instant) {
        self.local.mark(chat_id, now);
        let key = self.key(&format!("blocked:{chat_id}"));
        let expiry = Some(Expiration::PX(ms_i64(BLOCKED_TTL_MS)));
        let _: Option<fred::prelude::Value> =
            self.call("mark_blocked", self.client.set(key, 1, expiry, None, false)).await;
    }

    async fn is_blocked(&self, chat_id: i64, now: Instant) -> bool {
        let found: Option<i64> =
            self.call("is_blocked", self.client.exists(self.key(&format!("blocked:{chat_id}")))).await;
        found.map_or_else(|| self.local.blocked(chat_id, now), |found| found > 0)
    }
}

/// The script's `[kind, wait_ms]*n` as grants; `None` if malformed.
fn decode(reply: &[i64], n: usize, now: Instant) -> Option<Vec<Grant>> {
    if reply.len() != 2 * n {
        return None;
    }
    let wait = |ms: i64| now + Duration::from_millis(u64::try_from(ms).unwrap_or(1).max(1));
    reply
        .chunks_exact(2)
        .map(|pair| match *pair {
            [0, 0] => Some(Grant::Granted { next_at: None }),
            [0, ms] => Some(Grant::Granted { next_at: Some(wait(ms)) }),
            [1, ms] => Some(Grant::Wait { until: wait(ms), scope: Scope::Global }),
            [2, ms] => Some(Grant::Wait { until: wait(ms), scope: Scope::Chat }),
            [3, _] => Some(Grant::Blocked),
            _ => None,
        })
        .collect()
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms.max(1)).unwrap_or(i64::MAX)
}

fn build(config: Config, options: RedisBudgetOptions) -> Builder {
    let mut builder = Builder::from_config(config);
    let connection_timeout = Duration::from_millis(options.connection_timeout_ms.max(2));
    builder
        .with_config(|config| {
            // A Redis that is down at start is retried like one that went away.
            config.fail_fast = false;
        })
        .with_performance_config(|perf| {
            perf.default_command_timeout = Duration::from_millis(options.command_timeout_ms.max(1));
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = connection_timeout;
            conn.internal_command_timeout = connection_timeout;
            conn.unresponsive.max_timeout = Some(connection_timeout * 2);
            conn.unresponsive.interval = connection_timeout / 2;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
    builder
}

impl SendBudget for RedisBudget {
    fn try_take(&self, asks: Vec<Ask>, now: Instant) -> BoxFuture<Grants> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.take(asks, now).await })
    }

    fn freeze(&self, retry_after: Duration, now: Instant) -> BoxFuture<()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.freeze(retry_after, now).await })
    }

    fn is_frozen(&self, now: Instant) -> BoxFuture<bool> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.is_frozen(now).await })
    }

    fn mark_blocked(&self, chat_id: i64, now: Instant) -> BoxFuture<()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.mark_blocked(chat_id, now).await })
    }

    fn is_blocked(&self, chat_id: i64, now: Instant) -> BoxFuture<bool> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.is_blocked(chat_id, now).await })
    }

    fn blocked_cache_ms(&self) -> u64 {
        BLOCKED_CACHE_SHARED_MS
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[test]
    fn script_replies_decode_to_grants() {
        let now = Instant::now();
        let grants = decode(&[0, 0, 1, 250, 2, 900, 3, 0, 0, 1_000], 5, now).unwrap();
        assert_eq!(grants[0], Grant::Granted { next_at: None });
        assert_eq!(grants[4], Grant::Granted { next_at: Some(now + Duration::from_millis(1_000)) });
        assert_eq!(grants[1], Grant::Wait { until: now + Duration::from_millis(250), scope: Scope::Global });
        assert_eq!(grants[2], Grant::Wait { until: now + Duration::from_millis(900), scope: Scope::Chat });
        assert_eq!(grants[3], Grant::Blocked);
        assert!(decode(&[0, 0], 2, now).is_none());
        assert!(decode(&[7, 0], 1, now).is_none());
    }
}
