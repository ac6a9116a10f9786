//! The scheduling task: wakes on new messages, timers and results, asks the
//! budget for the chats whose turn has come (one batch out at a time, never
//! awaited on the loop), spawns the requests, applies their outcomes, and
//! passes freezes and blocked marks on to the budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use teloxide_core::Bot;
use tokio::sync::{Notify, mpsc};

use super::budget::{Ask, Grant, Scope, SendBudget};
use super::job::{Dispatch, Done, Lane, Outcome};
use super::request::{JsonCalls, classify, execute};
use super::scheduler::{Effect, Scheduler};
use super::{DRAIN_MAX_MS, SenderMetrics};

/// What comes back to the scheduling task.
// Nearly every event is a `Done`: boxing it would cost an allocation per
// message to save space on the rare `Granted`.
#[allow(clippy::large_enum_variant)]
enum Event {
    /// A request (or a refused grant) is done.
    Done(Done),
    /// A grant filled the chat's window until `until`.
    Paced { chat_id: i64, until: Instant },
    /// The budget answered a batch (its `Done`s were sent before this).
    Granted { local: bool },
}

pub(super) struct Shared {
    scheduler: Mutex<Scheduler>,
    pub(super) wake: Notify,
    pub(super) metrics: Arc<SenderMetrics>,
    /// Every handle is gone: drain and stop.
    closed: AtomicBool,
    /// The scheduling task has ended.
    pub(super) stopped: AtomicBool,
}

impl Shared {
    pub(super) fn new(scheduler: Scheduler, metrics: Arc<SenderMetrics>) -> Self {
        Self {
            scheduler: Mutex::new(scheduler),
            wake: Notify::new(),
            metrics,
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Scheduler> {
        // The scheduler's state stays consistent between calls (no panics
        // mid-update), so a poisoned lock is still usable.
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dropped with the last `SenderHandle`: tells the task to drain and stop.
pub(super) struct Life(pub(super) Arc<Shared>);

impl Drop for Life {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// Marks the sender stopped when the task ends (or is dropped with its runtime).
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
    }
}

/// The spawned parts of the task: they report back on `events`.
#[derive(Clone)]
struct Spawner {
    bot: Bot,
    json: Arc<JsonCalls>,
    token: Arc<str>,
    budget: Arc<dyn SendBudget>,
    events: mpsc::UnboundedSender<Event>,
}

impl Spawner {
    fn request(&self, dispatch: Dispatch) {
        let (bot, json, token, events) =
            (self.bot.clone(), Arc::clone(&self.json), Arc::clone(&self.token), self.events.clone());
        tokio::spawn(async move {
            let Dispatch { lane, job } = dispatch;
            let outcome = classify(execute(&bot, &json, &job.request).await, &job.request, &token);
            // The receiver lives as long as the scheduling task; if that
            // is gone, so is everything this result would update.
            let _ = events.send(Event::Done(Done { lane, job, outcome }));
        });
    }

    /// Asks the budget for one send to each chat of `batch`; sends the
    /// granted ones, gives the others back as `Wait`/`BlockedElsewhere`.
    fn grant(&self, batch: Vec<Dispatch>, now: Instant) {
        let this = self.clone();
        tokio::spawn(async move {
            let asks = batch
                .iter()
                .map(|d| Ask { chat: if let Lane::Chat(chat) = d.lane { chat } else { 0 }, replying: d.job.replying })
                .collect();
            let grants = this.budget.try_take(asks, now).await;
            let mut answers = grants.grants.into_iter();
            for dispatch in batch {
                let outcome = match answers.next() {
                    Some(Grant::Granted { next_at }) => {
                        if let (Some(until), Lane::Chat(chat_id)) = (next_at, dispatch.lane) {
                            let _ = this.events.send(Event::Paced { chat_id, until });
                        }
                        this.request(dispatch);
                        continue;
                    }
                    Some(Grant::Wait { until, scope }) => Outcome::Wait { until, scope },
                    Some(Grant::Blocked) => Outcome::BlockedElsewhere,
                    // A budget that answered too few: ask again shortly.
                    None => Outcome::Wait { until: now + Duration::from_millis(100), scope: Scope::Chat },
                };
                let _ = this.events.send(Event::Done(Done { lane: dispatch.lane, job: dispatch.job, outcome }));
            }
            let _ = this.events.send(Event::Granted { local: grants.local });
        });
    }

    fn effect(&self, effect: Effect, on_blocked: &(dyn Fn(i64) + Send + Sync)) {
        let budget = &self.budget;
        let now = Instant::now();
        // The budget's own state changes as it is called; only the shared
        // part goes on in a task.
        let shared = match effect {
            Effect::Blocked(chat_id) => {
                on_blocked(chat_id);
                budget.mark_blocked(chat_id, now)
            }
            Effect::Freeze(wait) => budget.freeze(wait, now),
        };
        tokio::spawn(shared);
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    bot: Bot,
    on_blocked: Arc<dyn Fn(i64) + Send + Sync>,
    budget: Arc<dyn SendBudget>,
) {
    let _stopped = StopGuard(Arc::clone(&shared));
    let (events, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let token: Arc<str> = Arc::from(bot.token());
    let json = JsonCalls::of(&bot);
    let spawner = Spawner { bot, json, token, budget, events };
    let mut callbacks = Vec::new();
    let mut chats = Vec::new();
    let mut effects = Vec::new();
    let mut drain_deadline: Option<Instant> = None;
    let mut on_local = false;
    loop {
        let now = Instant::now();
        let wake_at = {
            let mut scheduler = shared.lock();
            if shared.closed.load(Ordering::Acquire) {
                let deadline = *drain_deadline.get_or_insert(now + Duration::from_millis(DRAIN_MAX_MS));
                if scheduler.is_idle() || now >= deadline {
                    break;
                }
            }
            scheduler.sweep_if_due(now);
            scheduler.dispatch(now, &mut callbacks, &mut chats);
            scheduler.take_effects(&mut effects);
            scheduler.next_wake(now)
        };
        for effect in effects.drain(..) {
            spawner.effect(effect, on_blocked.as_ref());
        }
        for dispatch in callbacks.drain(..) {
            spawner.request(dispatch);
        }
        if !chats.is_empty() {
            spawner.grant(std::mem::take(&mut chats), now);
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(wake_at.into()) => {}
            Some(event) = events_rx.recv() => {
                let mut scheduler = shared.lock();
                let now = Instant::now();
                let mut next = Some(event);
                while let Some(event) = next {
                    match event {
                        Event::Done(done) => scheduler.complete(done, now),
                        Event::Paced { chat_id, until } => scheduler.pace(chat_id, until),
                        Event::Granted { local } => {
                            scheduler.granted();
                            if local && !on_local {
                                shared.metrics.budget_fallbacks.fetch_add(1, Ordering::Relaxed);
                            }
                            on_local = local;
                        }
                    }
                    next = events_rx.try_recv().ok();
                }
            }
        }
    }
}
