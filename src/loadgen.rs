//! `stockbot loadgen`: simulated players trading as fast as the engine
//! confirms. In-process (on the configured store: with `DATABASE_URL`, every
//! counted trade was committed to PostgreSQL first) or, with `--target`,
//! against a running server. Prints throughput and latency percentiles; the
//! last line is `trades_per_sec=N p50_ms=N p99_ms=N`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::clock::SystemClock;
use actors::domain::command::Command;
use actors::domain::ids::{AssetId, PlayerId};
use actors::engine::{Engine, EngineDeps};
use actors::metrics::EngineMetrics;
use actors::ports::NullNotifier;

pub mod crowd;
pub mod target;

use crowd::{Clients, Crowd};

use crate::bot::local_player_id;
use crate::config::Settings;
use crate::startup::open_store;

/// Most players a run may simulate.
pub const PLAYERS_MAX: u32 = 1_000_000;
/// Most concurrent clients (each with one command in flight).
pub const CONCURRENCY_MAX: usize = 65_536;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadgenArgs {
    pub seconds: f64,
    pub players: u32,
    /// Clients with one command in flight each. Unset: in process, as many
    /// as keep the median latency near 17 ms (up to 8,192); against a server, one
    /// per player.
    pub concurrency: Option<usize>,
    /// Also print throughput and latency for every second of the run.
    pub timeline: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub confirmed_trades: u64,
    pub rejected: u64,
    pub busy: u64,
    /// Of `busy`: posts that got no answer at all (connection lost, timeout).
    pub unanswered: u64,
    /// Of `rejected`: accepted updates whose reply never came in time.
    pub reply_timeouts: u64,
    /// A reply that confirmed nothing, as an example of what `rejected` saw.
    pub odd_reply: Option<String>,
    pub elapsed: Duration,
    /// Latencies of confirmed trades, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Per second of the run: trades confirmed in it and their latencies' p99 (ms).
    pub timeline: Vec<(u64, f64)>,
    /// When each trade was confirmed, ms into the run (unsorted, as
    /// `latencies_us` before sorting); emptied by `gather`.
    confirmed_at_ms: Vec<u32>,
    /// What the engine saw (group commits), when known.
    pub note: String,
}

impl LoadReport {
    /// Counts a confirmed trade sent at `sent`, in a run started at
    /// `started`; returns its latency in µs.
    pub fn confirm(&mut self, sent: Instant, started: Instant) -> u32 {
        let latency = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.confirmed_trades += 1;
        self.latencies_us.push(latency);
        self.confirmed_at_ms.push(u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX));
        latency
    }

    /// Per second: trades and their p99 latency in ms.
    fn build_timeline(&mut self) {
        let mut seconds: Vec<Vec<u32>> = Vec::new();
        for (at_ms, latency) in self.confirmed_at_ms.iter().zip(&self.latencies_us) {
            let second = usize::try_from(at_ms / 1000).unwrap_or(usize::MAX);
            if second >= seconds.len() {
                seconds.resize_with(second.saturating_add(1).min(1 << 20), Vec::new);
            }
            if let Some(bucket) = seconds.get_mut(second) {
                bucket.push(*latency);
            }
        }
        self.confirmed_at_ms = Vec::new();
        self.timeline = seconds
            .into_iter()
            .map(|mut latencies| {
                latencies.sort_unstable();
                (latencies.len() as u64, quantile_ms(&latencies, 0.99))
            })
            .collect();
    }

    /// Confirmed trades per second.
    #[must_use]
    pub fn trades_per_sec(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let trades = self.confirmed_trades as f64;
        if seconds > 0.0 { trades / seconds } else { 0.0 }
    }

    /// The `q` quantile of latency in milliseconds (`q` in `[0, 1]`).
    #[must_use]
    pub fn percentile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies_us, q)
    }

    /// Waits for every client and merges their reports into the run's.
    pub async fn gather(clients: Vec<tokio::task::JoinHandle<Self>>, started: Instant) -> Self {
        let mut report = Self::default();
        for client in clients {
            if let Ok(part) = client.await {
                report.confirmed_trades += part.confirmed_trades;
                report.rejected += part.rejected;
                report.busy += part.busy;
                report.unanswered += part.unanswered;
                report.reply_timeouts += part.reply_timeouts;
                if report.odd_reply.is_none() {
                    report.odd_reply = part.odd_reply;
                }
                report.latencies_us.extend(part.latencies_us);
                report.confirmed_at_ms.extend(part.confirmed_at_ms);
            }
        }
        report.elapsed = started.elapsed();
        report.build_timeline();
        report.latencies_us.sort_unstable();
        report
    }

    /// The summary, ending with the machine-readable line; with `timeline`,
    /// a line per second first.
    #[must_use]
    pub fn render(&self, timeline: bool) -> String {
        let seconds: String = if timeline {
            self.timeline
                .iter()
                .enumerate()
                .map(|(second, (trades, p99))| format!("second {second}: {trades} trades · p99 {p99:.2} ms\n"))
                .collect()
        } else {
            String::new()
        };
        let mut causes = String::new();
        if self.unanswered > 0 {
            causes
                .push_str(&format!("of the refused, unanswered (connection lost or timed out): {}\n", self.unanswered));
        }
        if self.reply_timeouts > 0 {
            causes.push_str(&format!("of the rejected, no reply in time: {}\n", self.reply_timeouts));
        }
        if let Some(reply) = &self.odd_reply {
            causes.push_str(&format!(
                "a reply that confirmed nothing: {:?}\n",
                reply.chars().take(120).collect::<String>()
            ));
        }
        format!(
            "{seconds}{}confirmed trades: {}\nrejected (player mistakes): {}\nrefused busy/unavailable: {}\n{causes}elapsed: {:.2} s\n\
             latency p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms\n\
             trades_per_sec={:.0} p50_ms={:.2} p99_ms={:.2}",
            if self.note.is_empty() { String::new() } else { format!("{}\n", self.note) },
            self.confirmed_trades,
            self.rejected,
            self.busy,
            self.elapsed.as_secs_f64(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.9),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.trades_per_sec(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
        )
    }
}

/// The `q` quantile (`q` in `[0, 1]`) of `sorted` latencies in µs, in µs;
/// `None` when there are none.
#[must_use]
fn quantile_us(sorted: &[u32], q: f64) -> Option<u32> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = (sorted.len().checked_sub(1)? as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(index).copied()
}

/// [`quantile_us`] in milliseconds, 0 when there are no latencies.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    quantile_us(sorted, q).map_or(0.0, |us| f64::from(us) / 1000.0)
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("--seconds must be in (0, 3600] and --players in [1, {PLAYERS_MAX}]")]
    Args,
    #[error("{0}")]
    Startup(#[from] crate::startup::StartupError),
    #[error("engine: {0}")]
    Engine(#[from] actors::engine::EngineError),
    #[error("target: {0}")]
    Target(String),
}

/// Runs simulated players against an in-process engine on the configured
/// store. Must run inside an actix system.
///
/// # Errors
/// Bad arguments, or a store/engine that cannot start.
pub async fn run_in_process(settings: &Settings, args: &LoadgenArgs) -> Result<LoadReport, LoadgenError> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) || args.players == 0 || args.players > PLAYERS_MAX {
        return Err(LoadgenError::Args);
    }
    let store = open_store(settings).await?;
    let deps =
        EngineDeps { store, clock: Arc::new(SystemClock), notifier: Arc::new(NullNotifier), autonomous_ticker: true };
    let engine = Engine::start(&settings.engine, deps).await?;
    let players: Vec<PlayerId> = (0..args.players).map(|i| local_player_id(&format!("loadgen-{i}"))).collect();
    for chunk in players.chunks(4_096) {
        engine.execute(chunk.iter().map(|player| Command::Open { player: *player }).collect()).await?;
    }
    let clients = match args.concurrency {
        Some(n) => Clients::Fixed(n.clamp(1, CONCURRENCY_MAX).min(players.len())),
        None => Clients::Adaptive(crowd::ADAPTIVE_MAX.min(players.len())),
    };
    let assets = tradable_assets(&engine);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    // The simulated players get a thread of their own: the engine's
    // threads do only the engine's work, as with players in Telegram.
    let arbiter = actix::Arbiter::new();
    let (sender, finished) = tokio::sync::oneshot::channel();
    let driver = engine.clone();
    arbiter.spawn_fn(move || {
        actix::spawn(run_crowd(driver, Crowd::new(players, assets, clients), clients, (started, deadline), sender));
    });
    let mut report = finished.await.map_err(|_| LoadgenError::Target("the load clients stopped".into()))?;
    arbiter.stop();
    let metrics = engine.metrics();
    let batches = EngineMetrics::get(&metrics.batches_persisted).max(1);
    #[allow(clippy::cast_precision_loss)]
    let flush_ms = EngineMetrics::get(&metrics.flush_latency_sum_us) as f64 / 1000.0 / batches as f64;
    report.note = format!(
        "{}\ngroup commits: {batches} · mean {} events per commit · mean commit {flush_ms:.1} ms",
        report.note,
        EngineMetrics::get(&metrics.batch_events_sum) / batches
    );
    engine.shutdown().await?;
    Ok(report)
}

/// Runs the crowd's clients (and the steering, when adaptive) on this
/// thread and sends their merged report.
async fn run_crowd(
    engine: Engine,
    crowd: Rc<Crowd>,
    clients: Clients,
    (started, deadline): (Instant, Instant),
    done: tokio::sync::oneshot::Sender<LoadReport>,
) {
    let steering = match clients {
        Clients::Adaptive(max) => Some(actix::spawn(crowd::steer(Rc::clone(&crowd), max, deadline))),
        Clients::Fixed(_) => None,
    };
    let workers: Vec<_> = (0..clients.max())
        .map(|client| actix::spawn(crowd::trade_until(engine.clone(), Rc::clone(&crowd), client, started, deadline)))
        .collect();
    let mut report = LoadReport::gather(workers, started).await;
    report.note = match (clients, steering) {
        (Clients::Adaptive(max), Some(steering)) => format!(
            "clients sending: adapted (median goal {} ms, at most {max}), {} at the end",
            crowd::ADAPTIVE_P50_GOAL_US / 1000,
            steering.await.unwrap_or(0)
        ),
        _ => format!("clients sending: {}", clients.max()),
    };
    let _ = done.send(report);
}

/// The assets a new player may trade (with the game gated, level 1 opens
/// some categories only): simulated players trade what a real one could,
/// rather than hammering locked markets.
fn tradable_assets(engine: &Engine) -> Vec<AssetId> {
    let rules = engine.game_rules();
    let opened = rules.progression.unlocks(1);
    let categories = engine.universe().asset_categories();
    (0..engine.universe().len())
        .filter(|index| !rules.gated || categories.get(*index).is_some_and(|c| opened.allows_category(*c)))
        .filter_map(|index| u16::try_from(index).ok().map(AssetId))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_counts_each_second_and_its_tail() {
        // Three trades confirmed in second 0, one in second 2 (none in 1).
        let mut report = LoadReport {
            latencies_us: vec![1_000, 2_000, 3_000, 40_000],
            confirmed_at_ms: vec![10, 500, 999, 2_100],
            ..LoadReport::default()
        };
        report.build_timeline();
        let expected: Vec<(u64, f64)> = vec![(3, 3.0), (0, 0.0), (1, 40.0)];
        assert_eq!(report.timeline, expected);
        assert!(report.render(true).starts_with("second 0: 3 trades · p99 3.00 ms\n"));
        assert!(!report.render(false).contains("second 0"));
    }
}
