//! `Window`: an exact sliding-window limit — at most `limit` sends in any
//! window of `span` — kept as the last `limit` send times.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `limit` sends in any window of `span`.
#[derive(Debug)]
pub(super) struct Window {
    limit: usize,
    span: Duration,
    sends: VecDeque<Instant>,
}

impl Window {
    /// A window of `limit` sends (at least one) per `span_ms`.
    pub(super) fn new(limit: u32, span_ms: u64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        Self { limit, span: Duration::from_millis(span_ms), sends: VecDeque::new() }
    }

    /// The earliest time (not before `now`) another send fits.
    pub(super) fn next_free(&self, now: Instant) -> Instant {
        match self.sends.front() {
            Some(oldest) if self.sends.len() >= self.limit => (*oldest + self.span).max(now),
            _ => now,
        }
    }

    /// Counts a send at `at` (not before the last one counted).
    pub(super) fn record(&mut self, at: Instant) {
        self.sends.push_back(at);
        while self.sends.len() > self.limit {
            self.sends.pop_front();
        }
    }

    /// Whether a send within the last span still counts.
    pub(super) fn busy(&self, now: Instant) -> bool {
        self.sends.back().is_some_and(|last| *last + self.span > now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    const fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn window_allows_limit_sends_per_span() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 1_000);
        assert_eq!(window.next_free(t0), t0);
        window.record(t0);
        window.record(t0 + ms(100));
        assert_eq!(window.next_free(t0 + ms(200)), t0 + ms(1_000));
        window.record(t0 + ms(1_000));
        assert_eq!(window.next_free(t0 + ms(1_000)), t0 + ms(1_100));
        assert!(window.busy(t0 + ms(1_999)));
        assert!(!window.busy(t0 + ms(2_000)));
    }

    proptest! {
        /// Whatever the arrivals, granting only when `next_free(now) <= now`
        /// never puts more than `limit` sends in any window of the span,
        /// and a refused arrival is told a time at which it would fit.
        #[test]
        fn no_window_of_the_span_holds_more_than_limit_grants(
            limit in 1u32..8,
            span_ms in 1u64..2_000,
            gaps_ms in proptest::collection::vec(0u64..600, 1..300),
        ) {
            let t0 = Instant::now();
            let mut window = Window::new(limit, span_ms);
            let mut now = t0;
            let mut granted: Vec<Instant> = Vec::new();
            for gap in gaps_ms {
                now += ms(gap);
                let free = window.next_free(now);
                prop_assert!(free >= now);
                if free <= now {
                    window.record(now);
                    granted.push(now);
                }
            }
            let limit = usize::try_from(limit).unwrap();
            for (i, start) in granted.iter().enumerate() {
                let inside = granted[i..].iter().take_while(|at| **at < *start + ms(span_ms)).count();
                prop_assert!(inside <= limit, "{inside} grants within {span_ms} ms from grant {i}");
            }
        }
    }
}
