//! Running more than one process on one game. Of all the engines on a
//! PostgreSQL database exactly one is active: it holds the engine lease
//! (`election`); the others stand by, following the committed log
//! (`follower`) so a takeover reads only a short tail. What an active engine
//! does is its [`election::Duty`]: in an `engine` process, the command
//! stream from NATS, answers and the outbox back to it (`engine_role`,
//! `outbox`); in an `all` process, its own webhook and play page
//! (`all_mode`). [`RoleStatus`] is what `/readyz`, `/admin/engine`, the
//! metrics and the logs say about it.

pub mod all_mode;
pub mod election;
pub mod engine_role;
pub mod follower;
pub mod notices;
pub mod outbox;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::store::postgres::lease::Fence;

/// Where an engine process stands.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Following the log, ready to take over.
    Standby,
    /// Holding the lease, taking work.
    Active(Arc<Fence>),
    /// Stopping (after a signal).
    Stopping,
}

/// What an engine process says about itself.
#[derive(Debug)]
pub struct RoleStatus {
    instance: String,
    phase: Mutex<Phase>,
    /// The newest epoch this process held or saw.
    epoch: AtomicU64,
    /// The local safety margin on the lease (see `lease_margin_ms`).
    margin: Duration,
    /// Times this process took the lease.
    pub takeovers: AtomicU64,
    /// Stream messages handled while active.
    pub commands: AtomicU64,
    /// Gauge: stream messages not yet handled (the stream's last sequence
    /// less the cursor), as last seen.
    pub lag: AtomicU64,
}

impl RoleStatus {
    /// A standby named `instance`, counting the lease as lost `margin`
    /// before its own clock says it runs out.
    #[must_use]
    pub fn new(instance: String, margin: Duration) -> Arc<Self> {
        Arc::new(Self {
            instance,
            phase: Mutex::new(Phase::Standby),
            epoch: AtomicU64::new(0),
            margin,
            takeovers: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            lag: AtomicU64::new(0),
        })
    }

    /// This process's name.
    #[must_use]
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        if let Phase::Active(fence) = &phase {
            self.epoch.fetch_max(fence.epoch(), Ordering::AcqRel);
        }
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// The newest epoch held or seen.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether this process may take work now: it holds the lease and, by
    /// its own clock, surely still will for a while (a paused engine that
    /// wakes up after its lease ran out is not active, whatever it thinks).
    #[must_use]
    pub fn is_active(&self) -> bool {
        match &*self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Active(fence) => !fence.surely_held_for(self.margin).is_zero(),
            Phase::Standby | Phase::Stopping => false,
        }
    }

    /// `active`, `standby` or `stopping`.
    #[must_use]
    pub fn role_name(&self) -> &'static str {
        if self.is_active() {
            return "active";
        }
        match &*self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Stopping => "stopping",
            Phase::Active(_) | Phase::Standby => "standby",
        }
    }

    /// `{"role", "epoch", "instance"}` for `/admin/engine`.
    #[must_use]
    pub fn engine_status(&self) -> wire::EngineStatus {
        wire::EngineStatus { role: self.role_name().to_owned(), epoch: self.epoch(), instance: self.instance.clone() }
    }

    /// The role's gauges and counters in Prometheus text.
    #[must_use]
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(1024);
        let role = self.role_name();
        let _ = writeln!(text, "# HELP stockbot_role This process's role.\n# TYPE stockbot_role gauge");
        let _ = writeln!(text, "stockbot_role{{role=\"{role}\",instance=\"{}\"}} 1", escape_label(&self.instance));
        for (name, kind, help, value) in [
            ("stockbot_lease_epoch", "gauge", "Newest lease epoch held or seen.", self.epoch()),
            (
                "stockbot_takeovers_total",
                "counter",
                "Times this process took the lease.",
                self.takeovers.load(Ordering::Relaxed),
            ),
            (
                "stockbot_stream_commands_total",
                "counter",
                "Command-stream messages handled.",
                self.commands.load(Ordering::Relaxed),
            ),
            (
                "stockbot_stream_lag",
                "gauge",
                "Command-stream messages not handled yet.",
                self.lag.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        text
    }
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
