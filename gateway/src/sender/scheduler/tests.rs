//! The scheduler against a `LocalBudget`, time passed in by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use wire::{InvoiceSpec, Reply};

use super::*;
use crate::sender::budget::{Ask, Grant, LocalBudget};
use crate::sender::job::Prepared;
use crate::sender::{BLOCKED_TTL_MS, Outgoing, RateLimits};

/// A scheduler and the local budget it asks.
struct Rig {
    s: Scheduler,
    budget: LocalBudget,
}

fn limits(global_per_sec: u32, chat_per_sec: u32, group_per_min: u32) -> RateLimits {
    RateLimits { global_per_sec, chat_per_sec, group_per_min }
}

fn rig(limits: RateLimits, queue_max: usize, now: Instant) -> Rig {
    let blocked_ttl = Duration::from_millis(BLOCKED_TTL_MS);
    let s = Scheduler::new(queue_max, blocked_ttl, Arc::new(SenderMetrics::default()), now);
    Rig { s, budget: LocalBudget::new(limits) }
}

fn text(chat_id: i64, body: &str) -> (Lane, Job) {
    Job::prepare(Outgoing::Text { chat_id, reply: Reply::text(body) })
}

fn push_text(rig: &mut Rig, chat_id: i64, body: &str, now: Instant) -> Result<(), SendError> {
    let (lane, job) = text(chat_id, body);
    rig.s.push(lane, job, now)
}

/// Dispatches and asks the budget as the scheduling task does; returns
/// what may be sent (callback answers first), the refused grants applied.
fn dispatch(rig: &mut Rig, now: Instant) -> Vec<Dispatch> {
    let (mut out, mut chats) = (Vec::new(), Vec::new());
    rig.s.dispatch(now, &mut out, &mut chats);
    let asks: Vec<Ask> = chats
        .iter()
        .map(|d| Ask { chat: if let Lane::Chat(chat) = d.lane { chat } else { 0 }, replying: d.job.replying })
        .collect();
    let grants = rig.budget.take(&asks, now);
    for (dispatch, grant) in chats.into_iter().zip(grants) {
        let outcome = match grant {
            Grant::Granted { next_at } => {
                if let (Some(until), Lane::Chat(chat_id)) = (next_at, dispatch.lane) {
                    rig.s.pace(chat_id, until);
                }
                out.push(dispatch);
                continue;
            }
            Grant::Wait { until, scope } => Outcome::Wait { until, scope },
            Grant::Blocked => Outcome::BlockedElsewhere,
        };
        rig.s.complete(Done { lane: dispatch.lane, job: dispatch.job, outcome }, now);
    }
    rig.s.granted();
    out
}

fn body(dispatch: &Dispatch) -> &str {
    match &dispatch.job.request {
        Prepared::Text { text, .. } | Prepared::Edit { text, .. } => text,
        Prepared::Photo { caption, .. } | Prepared::EditPhoto { caption, .. } => caption,
        Prepared::Answer { callback_query_id, .. } => callback_query_id,
        Prepared::Invoice { invoice, .. } => &invoice.title,
        Prepared::PreCheckout { pre_checkout_query_id, .. } => pre_checkout_query_id,
    }
}

fn finish(rig: &mut Rig, dispatch: Dispatch, outcome: Outcome, now: Instant) {
    rig.s.complete(Done { lane: dispatch.lane, job: dispatch.job, outcome }, now);
}

fn effects(rig: &mut Rig) -> Vec<Effect> {
    let mut out = Vec::new();
    rig.s.take_effects(&mut out);
    out
}

/// Dispatches and completes everything sendable at `now`; returns the bodies sent.
fn send_all_at(rig: &mut Rig, now: Instant) -> Vec<String> {
    let mut sent = Vec::new();
    loop {
        let batch = dispatch(rig, now);
        if batch.is_empty() {
            return sent;
        }
        for dispatch in batch {
            sent.push(body(&dispatch).to_owned());
            finish(rig, dispatch, Outcome::Sent, now);
        }
    }
}

const fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn private_chat_gets_one_message_per_second_in_order() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    for i in 0..3 {
        push_text(&mut r, 7, &format!("m{i}"), t0).unwrap();
    }
    assert_eq!(send_all_at(&mut r, t0), ["m0"]);
    assert_eq!(r.s.next_wake(t0), t0 + ms(1_000));
    assert!(send_all_at(&mut r, t0 + ms(999)).is_empty());
    assert_eq!(send_all_at(&mut r, t0 + ms(1_000)), ["m1"]);
    assert_eq!(send_all_at(&mut r, t0 + ms(2_000)), ["m2"]);
    assert_eq!(r.s.total, 0);
    assert_eq!(r.s.metrics.sent.load(Ordering::Relaxed), 3);
    assert_eq!(r.s.metrics.queued.load(Ordering::Relaxed), 0);
    // Paced by the grants (m1 and m2 each held back once), never refused.
    assert_eq!(r.s.metrics.budget_waits.load(Ordering::Relaxed), 2);
}

#[test]
fn group_gets_its_per_minute_budget_then_waits() {
    let t0 = Instant::now();
    let mut r = rig(limits(30, 1, 3), 100, t0);
    for i in 0..5 {
        push_text(&mut r, -42, &format!("g{i}"), t0).unwrap();
    }
    assert_eq!(send_all_at(&mut r, t0), ["g0", "g1", "g2"]);
    assert!(send_all_at(&mut r, t0 + ms(59_999)).is_empty());
    assert_eq!(send_all_at(&mut r, t0 + ms(60_000)), ["g3", "g4"]);
}

#[test]
fn a_waiting_chat_does_not_hold_up_others() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    for i in 0..3 {
        push_text(&mut r, 1, &format!("a{i}"), t0).unwrap();
    }
    push_text(&mut r, 2, "b0", t0).unwrap();
    push_text(&mut r, -3, "c0", t0).unwrap();
    assert_eq!(send_all_at(&mut r, t0), ["a0", "b0", "c0"]);
    // Later arrivals for other chats go at once while chat 1 waits.
    push_text(&mut r, 4, "d0", t0 + ms(10)).unwrap();
    assert_eq!(send_all_at(&mut r, t0 + ms(10)), ["d0"]);
    assert_eq!(send_all_at(&mut r, t0 + ms(1_000)), ["a1"]);
}

#[test]
fn one_request_in_flight_per_chat() {
    let t0 = Instant::now();
    let mut r = rig(limits(30, 10, 20), 100, t0);
    push_text(&mut r, 1, "a0", t0).unwrap();
    push_text(&mut r, 1, "a1", t0).unwrap();
    let first = dispatch(&mut r, t0);
    assert_eq!(first.len(), 1);
    assert!(dispatch(&mut r, t0 + ms(500)).is_empty(), "second message must wait for the first's answer");
    for d in first {
        finish(&mut r, d, Outcome::Sent, t0 + ms(500));
    }
    assert_eq!(send_all_at(&mut r, t0 + ms(500)), ["a1"]);
}

#[test]
fn one_batch_at_a_time_goes_to_the_budget() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    push_text(&mut r, 1, "a0", t0).unwrap();
    let (mut callbacks, mut chats) = (Vec::new(), Vec::new());
    r.s.dispatch(t0, &mut callbacks, &mut chats);
    assert_eq!(chats.len(), 1);
    push_text(&mut r, 2, "b0", t0).unwrap();
    let (mut callbacks, mut more) = (Vec::new(), Vec::new());
    r.s.dispatch(t0, &mut callbacks, &mut more);
    assert!(more.is_empty(), "the first batch is still being granted");
    r.s.granted();
    r.s.dispatch(t0, &mut callbacks, &mut more);
    assert_eq!(more.len(), 1);
}

#[test]
fn global_limit_spreads_a_burst_over_chats() {
    let t0 = Instant::now();
    let mut r = rig(limits(2, 1, 20), 100, t0);
    for chat in 1..=5 {
        push_text(&mut r, chat, &format!("c{chat}"), t0).unwrap();
    }
    assert_eq!(send_all_at(&mut r, t0), ["c1", "c2"]);
    assert_eq!(r.s.next_wake(t0), t0 + ms(1_000));
    assert_eq!(send_all_at(&mut r, t0 + ms(1_000)), ["c3", "c4"]);
    assert_eq!(send_all_at(&mut r, t0 + ms(2_000)), ["c5"]);
}

#[test]
fn callback_answers_go_first_and_skip_the_budget() {
    let t0 = Instant::now();
    let mut r = rig(limits(1, 1, 20), 100, t0);
    push_text(&mut r, 1, "a0", t0).unwrap();
    push_text(&mut r, 2, "b0", t0).unwrap();
    for id in ["q1", "q2"] {
        let (lane, job) = Job::prepare(Outgoing::AnswerCallback { callback_query_id: id.to_owned(), text: None });
        r.s.push(lane, job, t0).unwrap();
    }
    assert_eq!(send_all_at(&mut r, t0), ["q1", "q2", "a0"]);
    assert_eq!(send_all_at(&mut r, t0 + ms(1_000)), ["b0"]);
}

#[test]
fn checkout_answers_jump_the_queue_and_an_invoice_follows_its_text() {
    let t0 = Instant::now();
    let mut r = rig(limits(10, 1, 20), 100, t0);
    push_text(&mut r, 1, "premium", t0).unwrap();
    let invoice = InvoiceSpec { title: "inv".into(), description: "d".into(), payload: "premium".into(), stars: 50 };
    let (lane, job) = Job::prepare(Outgoing::Invoice { chat_id: 1, invoice });
    r.s.push(lane, job, t0).unwrap();
    let answer = Outgoing::AnswerPreCheckout { pre_checkout_query_id: "pcq".into(), error: None };
    let (lane, job) = Job::prepare(answer);
    r.s.push(lane, job, t0).unwrap();
    assert_eq!(send_all_at(&mut r, t0), ["pcq", "premium"]);
    assert_eq!(send_all_at(&mut r, t0 + ms(1_000)), ["inv"]);
}

#[test]
fn retry_after_freezes_every_chat_and_resends_the_same_message() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    push_text(&mut r, 1, "a0", t0).unwrap();
    push_text(&mut r, 2, "b0", t0).unwrap();
    let mut batch = dispatch(&mut r, t0).into_iter();
    let a = batch.next().unwrap();
    finish(&mut r, a, Outcome::RetryAfter(ms(5_000)), t0 + ms(10));
    for d in batch {
        finish(&mut r, d, Outcome::Sent, t0 + ms(10));
    }
    assert_eq!(r.s.total, 1);
    assert_eq!(r.s.metrics.retried_429.load(Ordering::Relaxed), 1);
    assert_eq!(r.s.metrics.budget_freezes.load(Ordering::Relaxed), 1);
    assert_eq!(effects(&mut r), [Effect::Freeze(ms(5_000))]);
    push_text(&mut r, 3, "c0", t0 + ms(20)).unwrap();
    assert!(send_all_at(&mut r, t0 + ms(20)).is_empty(), "a 429 holds every chat");
    assert!(send_all_at(&mut r, t0 + ms(5_000)).is_empty());
    let mut sent = send_all_at(&mut r, t0 + ms(5_010));
    sent.sort();
    assert_eq!(sent, ["a0", "c0"]);
    assert_eq!(r.s.total, 0);
}

#[test]
fn a_freeze_in_the_budget_holds_every_chat() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    r.budget.freeze_until(t0 + ms(2_000));
    push_text(&mut r, 1, "a0", t0).unwrap();
    push_text(&mut r, 2, "b0", t0).unwrap();
    assert!(send_all_at(&mut r, t0).is_empty());
    assert_eq!(r.s.next_wake(t0), t0 + ms(2_000));
    assert_eq!(send_all_at(&mut r, t0 + ms(2_000)), ["a0", "b0"]);
}

#[test]
fn blocked_chat_is_reported_once_and_its_queue_dropped() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    for i in 0..3 {
        push_text(&mut r, 9, &format!("m{i}"), t0).unwrap();
    }
    push_text(&mut r, 10, "other", t0).unwrap();
    for d in dispatch(&mut r, t0) {
        let outcome = if d.lane == Lane::Chat(9) { Outcome::Blocked("403".into()) } else { Outcome::Sent };
        finish(&mut r, d, outcome, t0 + ms(10));
    }
    assert_eq!(effects(&mut r), [Effect::Blocked(9)]);
    assert_eq!(r.s.total, 0);
    assert_eq!(r.s.metrics.blocked.load(Ordering::Relaxed), 1);
    assert_eq!(r.s.metrics.failed.load(Ordering::Relaxed), 3);
    assert_eq!(push_text(&mut r, 9, "later", t0 + ms(20)), Err(SendError::Blocked));
    assert!(send_all_at(&mut r, t0 + ms(5_000)).is_empty());
    // The mark expires (a reply to the chat lifts it at once).
    assert_eq!(push_text(&mut r, 9, "back", t0 + ms(BLOCKED_TTL_MS + 10)), Ok(()));
}

#[test]
fn a_chat_blocked_in_the_budget_is_dropped_without_a_request() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    r.budget.mark(5, t0);
    push_text(&mut r, 5, "m0", t0).unwrap();
    push_text(&mut r, 5, "m1", t0).unwrap();
    assert!(send_all_at(&mut r, t0).is_empty());
    assert_eq!(r.s.total, 0);
    assert_eq!(r.s.metrics.blocked_elsewhere.load(Ordering::Relaxed), 1);
    assert_eq!(r.s.metrics.failed.load(Ordering::Relaxed), 2);
    assert!(effects(&mut r).is_empty(), "already marked: nothing to report");
    assert_eq!(push_text(&mut r, 5, "m2", t0), Err(SendError::Blocked));
    // The chat writes to the bot again: the reply lifts the marks, here and in the budget.
    let (lane, mut job) = text(5, "welcome back");
    job.replying = true;
    assert_eq!(r.s.push(lane, job, t0), Ok(()));
    assert_eq!(send_all_at(&mut r, t0), ["welcome back"]);
    assert!(!r.budget.blocked(5, t0));
    assert_eq!(push_text(&mut r, 5, "m3", t0), Ok(()));
}

#[test]
fn transient_failures_back_off_then_give_up() {
    let t0 = Instant::now();
    let mut r = rig(limits(30, 100, 20), 100, t0);
    push_text(&mut r, 1, "a0", t0).unwrap();
    let mut now = t0;
    for attempt in 1..=ATTEMPTS_MAX {
        let batch = dispatch(&mut r, now);
        assert_eq!(batch.len(), 1, "attempt {attempt}");
        for d in batch {
            finish(&mut r, d, Outcome::Transient("connection reset".into()), now);
        }
        assert!(dispatch(&mut r, now).is_empty(), "no retry without backoff");
        now += backoff(attempt);
    }
    assert_eq!(r.s.total, 0);
    assert_eq!(r.s.metrics.failed.load(Ordering::Relaxed), 1);
    assert_eq!(r.s.metrics.sent.load(Ordering::Relaxed), 0);
}

#[test]
fn permanent_error_drops_only_that_message() {
    let t0 = Instant::now();
    let mut r = rig(limits(30, 100, 20), 100, t0);
    push_text(&mut r, 1, "bad", t0).unwrap();
    push_text(&mut r, 1, "good", t0).unwrap();
    for d in dispatch(&mut r, t0) {
        finish(&mut r, d, Outcome::Failed("can't parse entities".into()), t0);
    }
    assert_eq!(send_all_at(&mut r, t0 + ms(10)), ["good"]);
    assert_eq!(r.s.metrics.failed.load(Ordering::Relaxed), 1);
}

#[test]
fn migration_moves_the_queue_to_the_supergroup() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    push_text(&mut r, -5, "g0", t0).unwrap();
    push_text(&mut r, -5, "g1", t0).unwrap();
    for d in dispatch(&mut r, t0) {
        finish(&mut r, d, Outcome::Migrated(-100_555), t0);
    }
    let batch = dispatch(&mut r, t0);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].lane, Lane::Chat(-100_555));
    assert!(matches!(batch[0].job.request, Prepared::Text { chat_id: -100_555, .. }));
    assert_eq!(r.s.total, 2);
}

#[test]
fn queues_are_bounded() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 3, t0);
    for i in 0..3 {
        push_text(&mut r, i + 1, "x", t0).unwrap();
    }
    assert_eq!(push_text(&mut r, 9, "x", t0), Err(SendError::Full));
    let mut r = rig(RateLimits::default(), 10_000, t0);
    for _ in 0..CHAT_QUEUE_MAX {
        push_text(&mut r, 1, "x", t0).unwrap();
    }
    assert_eq!(push_text(&mut r, 1, "x", t0), Err(SendError::ChatFull));
    assert_eq!(push_text(&mut r, 2, "x", t0), Ok(()));
}

#[test]
fn idle_chats_are_forgotten() {
    let t0 = Instant::now();
    let mut r = rig(RateLimits::default(), 100, t0);
    push_text(&mut r, 1, "a", t0).unwrap();
    send_all_at(&mut r, t0);
    r.s.sweep_if_due(t0 + ms(SWEEP_INTERVAL_MS));
    assert!(r.s.chats.is_empty());
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    assert_eq!(backoff(1), ms(500));
    assert_eq!(backoff(2), ms(1_000));
    assert_eq!(backoff(3), ms(2_000));
    assert_eq!(backoff(40), ms(BACKOFF_MAX_MS));
}
