//! `LocalBudget`: the send budget of one process — exact sliding windows
//! (global, per chat, per group), the freeze and the blocked chats in
//! memory. The default budget, and `RedisBudget`'s fallback.

use std::collections::HashMap;
use std::future::ready;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::window::Window;
use super::{Ask, BoxFuture, Grant, Grants, SECOND_MS, Scope, SendBudget, chat_limit, chat_span_ms};
use crate::sender::{BLOCKED_CHATS_MAX, BLOCKED_TTL_MS, RateLimits};

/// How often windows that no longer count and expired marks are dropped.
const SWEEP_INTERVAL_MS: u64 = 5_000;

/// The send budget of one process.
#[derive(Debug)]
pub struct LocalBudget {
    limits: RateLimits,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    global: Window,
    chats: HashMap<i64, Window>,
    frozen_until: Option<Instant>,
    blocked: HashMap<i64, Instant>,
    next_sweep: Option<Instant>,
}

impl LocalBudget {
    /// A budget keeping to `limits`.
    #[must_use]
    pub fn new(limits: RateLimits) -> Self {
        let state = State {
            global: Window::new(limits.global_per_sec, SECOND_MS),
            chats: HashMap::new(),
            frozen_until: None,
            blocked: HashMap::new(),
            next_sweep: None,
        };
        Self { limits, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `try_take` without the future (a bare chat id asks for a notice).
    pub fn take<A: Copy + Into<Ask>>(&self, asks: &[A], now: Instant) -> Vec<Grant> {
        let mut state = self.lock();
        state.sweep_if_due(now);
        asks.iter()
            .map(|&ask| {
                let ask: Ask = ask.into();
                if ask.replying {
                    state.blocked.remove(&ask.chat);
                }
                state.take(&self.limits, ask.chat, now)
            })
            .collect()
    }

    /// Counts a send granted elsewhere (by the shared budget), so that a
    /// switch to this budget starts from what was sent.
    pub fn record(&self, chat_id: i64, now: Instant) {
        let mut state = self.lock();
        state.global.record(now);
        let limits = self.limits;
        state.chat(&limits, chat_id).record(now);
    }

    /// Freezes every send until `until` (a later freeze wins).
    pub fn freeze_until(&self, until: Instant) {
        let mut state = self.lock();
        state.frozen_until = Some(state.frozen_until.map_or(until, |frozen| frozen.max(until)));
    }

    /// The end of the freeze, if sends are frozen at `now`.
    pub fn frozen_until(&self, now: Instant) -> Option<Instant> {
        self.lock().frozen_until.filter(|until| *until > now)
    }

    /// Marks `chat_id` blocked until `now + BLOCKED_TTL_MS`.
    pub fn mark(&self, chat_id: i64, now: Instant) {
        let mut state = self.lock();
        if state.blocked.len() >= BLOCKED_CHATS_MAX {
            state.blocked.retain(|_, until| *until > now);
        }
        if state.blocked.len() < BLOCKED_CHATS_MAX {
            state.blocked.insert(chat_id, now + Duration::from_millis(BLOCKED_TTL_MS));
        }
    }

    /// Whether `chat_id` is marked blocked at `now`.
    pub fn blocked(&self, chat_id: i64, now: Instant) -> bool {
        self.lock().blocked.get(&chat_id).is_some_and(|until| *until > now)
    }

    /// Lifts the blocked mark of `chat_id`.
    pub fn clear(&self, chat_id: i64) {
        self.lock().blocked.remove(&chat_id);
    }
}

impl State {
    fn chat(&mut self, limits: &RateLimits, chat_id: i64) -> &mut Window {
        self.chats.entry(chat_id).or_insert_with(|| Window::new(chat_limit(limits, chat_id), chat_span_ms(chat_id)))
    }

    fn take(&mut self, limits: &RateLimits, chat_id: i64, now: Instant) -> Grant {
        if self.blocked.get(&chat_id).is_some_and(|until| *until > now) {
            return Grant::Blocked;
        }
        if let Some(until) = self.frozen_until.filter(|until| *until > now) {
            return Grant::Wait { until, scope: Scope::Global };
        }
        let global = self.global.next_free(now);
        if global > now {
            return Grant::Wait { until: global, scope: Scope::Global };
        }
        let chat = self.chat(limits, chat_id);
        let free = chat.next_free(now);
        if free > now {
            return Grant::Wait { until: free, scope: Scope::Chat };
        }
        chat.record(now);
        let next = chat.next_free(now);
        self.global.record(now);
        Grant::Granted { next_at: (next > now).then_some(next) }
    }

    fn sweep_if_due(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + Duration::from_millis(SWEEP_INTERVAL_MS));
        self.chats.retain(|_, window| window.busy(now));
        self.blocked.retain(|_, until| *until > now);
    }
}

impl SendBudget for LocalBudget {
    fn try_take(&self, asks: Vec<Ask>, now: Instant) -> BoxFuture<Grants> {
        Box::pin(ready(Grants { grants: self.take(&asks, now), local: false }))
    }

    fn freeze(&self, retry_after: Duration, now: Instant) -> BoxFuture<()> {
        self.freeze_until(now + retry_after);
        Box::pin(ready(()))
    }

    fn is_frozen(&self, now: Instant) -> BoxFuture<bool> {
        Box::pin(ready(self.frozen_until(now).is_some()))
    }

    fn mark_blocked(&self, chat_id: i64, now: Instant) -> BoxFuture<()> {
        self.mark(chat_id, now);
        Box::pin(ready(()))
    }

    fn is_blocked(&self, chat_id: i64, now: Instant) -> BoxFuture<bool> {
        Box::pin(ready(self.blocked(chat_id, now)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use proptest::prelude::*;

    use crate::sender::budget::GROUP_SPAN_MS;

    use super::*;

    const GRANTED: Grant = Grant::Granted { next_at: None };

    const fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn limits(global_per_sec: u32, chat_per_sec: u32, group_per_min: u32) -> RateLimits {
        RateLimits { global_per_sec, chat_per_sec, group_per_min }
    }

    #[test]
    fn grants_in_order_until_a_window_is_full() {
        let t0 = Instant::now();
        let budget = LocalBudget::new(limits(3, 1, 2));
        let grants = budget.take(&[1, 1, -5, -5, -5], t0);
        assert_eq!(grants[0], Grant::Granted { next_at: Some(t0 + ms(1_000)) });
        assert_eq!(grants[1], Grant::Wait { until: t0 + ms(1_000), scope: Scope::Chat });
        assert_eq!(grants[2..4], [GRANTED, Grant::Granted { next_at: Some(t0 + ms(60_000)) }]);
        assert_eq!(grants[4], Grant::Wait { until: t0 + ms(1_000), scope: Scope::Global });
        assert_eq!(budget.take(&[-5], t0 + ms(1_000)), [Grant::Wait { until: t0 + ms(60_000), scope: Scope::Chat }]);
    }

    #[test]
    fn a_freeze_holds_every_chat_and_a_mark_blocks_one() {
        let t0 = Instant::now();
        let budget = LocalBudget::new(limits(30, 2, 20));
        budget.freeze_until(t0 + ms(3_000));
        budget.freeze_until(t0 + ms(1_000));
        assert_eq!(budget.take(&[1], t0), [Grant::Wait { until: t0 + ms(3_000), scope: Scope::Global }]);
        assert_eq!(budget.take(&[1], t0 + ms(3_000)), [GRANTED]);
        budget.mark(2, t0);
        assert_eq!(budget.take(&[2], t0 + ms(3_000)), [Grant::Blocked]);
        budget.clear(2);
        assert_eq!(budget.take(&[2], t0 + ms(3_000)), [GRANTED]);
        budget.mark(3, t0);
        assert_eq!(budget.take(&[3], t0 + ms(BLOCKED_TTL_MS)), [GRANTED], "marks expire");
    }

    proptest! {
        /// Whatever the arrivals, over chats and groups, no window of a
        /// span ever holds more grants than its limit: globally, per chat.
        #[test]
        fn grants_never_overfill_a_window(
            global in 1u32..6,
            chat in 1u32..3,
            group in 1u32..4,
            arrivals in proptest::collection::vec((0u64..400, -3i64..4), 1..300),
        ) {
            let t0 = Instant::now();
            let budget = LocalBudget::new(limits(global, chat, group));
            let mut now = t0;
            let mut granted: Vec<(Instant, i64)> = Vec::new();
            for (gap, chat_id) in arrivals {
                now += ms(gap);
                for grant in budget.take(&[chat_id], now) {
                    if matches!(grant, Grant::Granted { .. }) {
                        granted.push((now, chat_id));
                    }
                }
            }
            let most = |span: Duration, of: &dyn Fn(i64) -> bool| {
                let times: Vec<Instant> = granted.iter().filter(|(_, c)| of(*c)).map(|(at, _)| *at).collect();
                (0..times.len()).map(|i| times[i..].iter().take_while(|at| **at < times[i] + span).count()).max()
            };
            let limit = |n: u32| Some(usize::try_from(n).unwrap());
            prop_assert!(most(ms(SECOND_MS), &|_| true) <= limit(global));
            for id in -3i64..4 {
                let (span, n) = if id > 0 { (SECOND_MS, chat) } else { (GROUP_SPAN_MS, group) };
                prop_assert!(most(ms(span), &|c| c == id) <= limit(n), "chat {id}");
            }
        }
    }
}
