//! The election loop of an engine process: stand by (following the log and
//! watching the lease), take the lease when it is free — expired by the
//! database's clock, or its holder's connection gone — start the engine from
//! the followed state and hand it to the process's [`Duty`]; while active,
//! renew the lease; step down the moment the lease is lost (a renewal or a
//! write found it superseded, or by this process's own clock it may have
//! run out), and stand by again. On a stop signal an active engine stops
//! taking work, finishes what it took (bounded), flushes (bounded) and
//! frees the lease at once for a standby.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actors::clock::{Clock as _, SystemClock};
use actors::config::EngineConfig;
use actors::engine::{Engine, EngineDeps};
use actors::ports::{Notifier, Store, StoreError};
use tokio::sync::watch;

use super::follower::Follower;
use super::notices::Republish;
use super::{Phase, RoleStatus};
use crate::config::ClusterSettings;
use crate::startup::POSTGRES_POOL_SIZE;
use crate::store::postgres::PostgresStore;
use crate::store::postgres::lease::{Fence, LeaseSession, Taken};

/// Pause before trying again when the database cannot be reached.
const RETRY_PAUSE_MS: u64 = 500;

/// The engine a duty works with while the lease is held.
pub struct Active {
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub postgres: PostgresStore,
    pub fence: Arc<Fence>,
    /// Stream messages up to here were fully handled by earlier holders.
    pub cursor: u64,
    /// The stream the cursor counts in (empty before any).
    pub stream: String,
    /// The newest stream message an earlier holder applied a command of:
    /// messages up to here may be delivered a second time.
    pub replay_through: u64,
}

/// What a process does with the engine while it holds the lease.
pub trait Duty {
    /// The notifier the engine is started with (fills, alerts), under
    /// `fence`; `owed` names the notices an earlier holder may not have got
    /// out (a notifier that can publish them again does so first).
    fn notifier(&self, fence: &Arc<Fence>, owed: Option<Republish>) -> Arc<dyn Notifier>;
    /// Takes work with `active`'s engine.
    fn activate(&mut self, active: &Active) -> impl std::future::Future<Output = Result<(), String>>;
    /// Stops taking work; waits at most `drain` for what was taken.
    fn deactivate(&mut self, drain: Duration) -> impl std::future::Future<Output = ()>;
}

/// Why an active engine stopped being active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A stop signal: flush and free the lease.
    Stop,
    /// The lease went to another engine (or may have): write nothing more.
    Lost,
}

/// One engine process's part in the election.
pub struct Election {
    pub database_url: String,
    pub config: EngineConfig,
    pub cluster: ClusterSettings,
    pub status: Arc<RoleStatus>,
}

impl Election {
    /// Runs until `stop` turns true: standby, active, standby … Returns once
    /// stopped (and, if it was active, flushed and released).
    pub async fn run<D: Duty>(&self, duty: &mut D, mut stop: watch::Receiver<bool>) {
        let mut session: Option<LeaseSession> = None;
        loop {
            self.status.set(Phase::Standby);
            let Some((follower, taken)) = self.stand_by(&mut session, &mut stop).await else { return };
            match self.serve(duty, follower, &taken, &mut session, &mut stop).await {
                Ending::Stop => return,
                Ending::Lost => tracing::warn!(epoch = taken.epoch, "stepped down; standing by"),
            }
        }
    }

    /// A lease session, connected anew when it was lost.
    async fn session<'s>(&self, session: &'s mut Option<LeaseSession>) -> Result<&'s LeaseSession, StoreError> {
        if session.as_ref().is_none_or(LeaseSession::is_closed) {
            *session = Some(LeaseSession::connect(&self.database_url, self.status.instance()).await?);
        }
        session.as_ref().ok_or_else(|| StoreError::Unavailable("no lease session".into()))
    }

    /// Follows the log until the lease is free and taken; `None` on a stop.
    async fn stand_by(
        &self,
        session: &mut Option<LeaseSession>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Follower, Taken)> {
        let follower = loop {
            let store = match PostgresStore::connect_lazy_as(
                &self.database_url,
                POSTGRES_POOL_SIZE,
                Some(self.status.instance()),
            ) {
                Ok(store) => store,
                Err(error) => {
                    tracing::error!(%error, "cannot use the database");
                    return None;
                }
            };
            match Follower::start(store, &self.config).await {
                Ok(follower) => break follower,
                Err(error) => {
                    tracing::warn!(%error, "cannot follow the log yet; retrying");
                    if pause(stop, RETRY_PAUSE_MS).await {
                        return None;
                    }
                }
            }
        };
        let mut follower = follower;
        tracing::info!(seq = follower.seq(), "standing by");
        let (poll, follow) = (self.cluster.standby_poll_ms.max(10), self.cluster.follow_interval_ms.max(10));
        let mut next_follow = tokio::time::Instant::now();
        loop {
            if pause(stop, poll.min(follow)).await {
                return None;
            }
            if tokio::time::Instant::now() >= next_follow {
                next_follow = tokio::time::Instant::now() + Duration::from_millis(follow);
                if let Err(error) = follower.follow().await {
                    tracing::warn!(%error, "following the log failed; again");
                }
            }
            let lease = match self.session(session).await {
                Ok(lease) => lease,
                Err(error) => {
                    tracing::warn!(%error, "lease session unavailable");
                    continue;
                }
            };
            let view = match lease.read().await {
                Ok(view) => view,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the lease");
                    continue;
                }
            };
            self.status.epoch.fetch_max(view.epoch, Ordering::AcqRel);
            if !view.is_free() {
                continue;
            }
            match lease.take(&view, self.cluster.lease_ms).await {
                Ok(Some(taken)) => {
                    tracing::info!(
                        epoch = taken.epoch,
                        from = %view.holder,
                        expired = view.expired,
                        holder_connected = view.holder_connected,
                        sessions_ended = taken.sessions_ended,
                        cursor = taken.cursor,
                        "took the engine lease"
                    );
                    return Some((follower, taken));
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "taking the lease failed"),
            }
        }
    }

    /// Active: starts the engine, hands it to `duty`, renews the lease
    /// until it is lost or a stop comes.
    async fn serve<D: Duty>(
        &self,
        duty: &mut D,
        follower: Follower,
        taken: &Taken,
        session: &mut Option<LeaseSession>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ending {
        let fence = Fence::new(taken.epoch, self.cluster.lease_ms, taken.cursor, taken.at);
        let started = self.start_engine(duty, follower, &fence, taken).await;
        let active = match started {
            Ok(active) => active,
            Err(error) => {
                tracing::error!(%error, epoch = taken.epoch, "could not start the engine; giving the lease back");
                self.release(session, &fence).await;
                return if pause(stop, RETRY_PAUSE_MS).await { Ending::Stop } else { Ending::Lost };
            }
        };
        self.status.takeovers.fetch_add(1, Ordering::Relaxed);
        self.status.set(Phase::Active(Arc::clone(&fence)));
        if let Err(error) = duty.activate(&active).await {
            tracing::error!(%error, epoch = taken.epoch, "could not take work; stepping down");
            active.engine.halt();
            self.release(session, &fence).await;
            return Ending::Lost;
        }
        tracing::info!(epoch = taken.epoch, cursor = taken.cursor, "active");
        let margin = Duration::from_millis(self.cluster.lease_margin_ms);
        let ending = loop {
            if pause(stop, self.cluster.heartbeat_ms.max(10)).await {
                break Ending::Stop;
            }
            match self.session(session).await {
                Ok(lease) => match lease.heartbeat(&fence).await {
                    Ok(()) => {}
                    Err(StoreError::Fenced(reason)) => {
                        tracing::error!(%reason, epoch = fence.epoch(), "the lease was taken over");
                        break Ending::Lost;
                    }
                    Err(error) => tracing::warn!(%error, epoch = fence.epoch(), "lease renewal failed"),
                },
                Err(error) => tracing::warn!(%error, "lease session unavailable"),
            }
            if fence.superseded() || fence.surely_held_for(margin).is_zero() {
                tracing::error!(epoch = fence.epoch(), "the lease may have run out; stepping down");
                break Ending::Lost;
            }
        };
        self.end(duty, active, ending, session).await;
        ending
    }

    /// The engine, started from the followed state under `fence`.
    async fn start_engine<D: Duty>(
        &self,
        duty: &D,
        follower: Follower,
        fence: &Arc<Fence>,
        taken: &Taken,
    ) -> Result<Active, String> {
        let (recovered, postgres) =
            follower.take_over(Arc::clone(fence), taken.cursor).await.map_err(|error| error.to_string())?;
        let replay_through = recovered.applied.last_message().unwrap_or(0);
        let store: Arc<dyn Store> = Arc::new(postgres.clone());
        let owed = taken.notices_through.map(|after| Republish {
            store: Arc::clone(&store),
            after,
            through: recovered.exchange.next_seq().saturating_sub(1),
        });
        // A fresh market's charts get the model's seeded past before its
        // first tick; later takeovers find candles and write nothing.
        if let Err(error) = crate::backfill::seed_history(&self.config, &store, SystemClock.now_ms()).await {
            tracing::warn!(%error, "chart backfill skipped");
        }
        let deps = EngineDeps {
            store: Arc::clone(&store),
            clock: Arc::new(SystemClock),
            notifier: duty.notifier(fence, owed),
            autonomous_ticker: true,
        };
        let engine = Engine::start_recovered(&self.config, deps, recovered).await.map_err(|error| error.to_string())?;
        Ok(Active {
            engine,
            store,
            postgres,
            fence: Arc::clone(fence),
            cursor: taken.cursor,
            stream: taken.stream.clone(),
            replay_through,
        })
    }

    /// Leaves the active phase: a stop flushes and frees the lease; a lost
    /// lease writes nothing more.
    async fn end<D: Duty>(&self, duty: &mut D, active: Active, ending: Ending, session: &mut Option<LeaseSession>) {
        let epoch = active.fence.epoch();
        match ending {
            Ending::Stop => {
                self.status.set(Phase::Stopping);
                duty.deactivate(Duration::from_millis(self.cluster.stop_drain_max_ms)).await;
                let flush = Duration::from_millis(self.cluster.stop_flush_max_ms);
                if let Err(error) = active.engine.shutdown_within(flush).await {
                    tracing::error!(%error, epoch, "the final flush failed");
                }
                active.engine.halt();
                self.release(session, &active.fence).await;
            }
            Ending::Lost => {
                self.status.set(Phase::Standby);
                // Nothing it holds may be written: stop taking work at once.
                duty.deactivate(Duration::ZERO).await;
                active.engine.halt();
            }
        }
    }
}

impl Election {
    /// Frees `fence`'s lease for a standby at once (else it expires).
    async fn release(&self, session: &mut Option<LeaseSession>, fence: &Fence) {
        let epoch = fence.epoch();
        let released = match self.session(session).await {
            Ok(lease) => lease.release(fence).await,
            Err(error) => Err(error),
        };
        match released {
            Ok(()) => tracing::info!(epoch, "lease released"),
            Err(error) => tracing::warn!(%error, epoch, "lease not released; it expires by itself"),
        }
    }
}

/// Sleeps `ms`; `true` if `stop` turned true meanwhile (or already was).
async fn pause(stop: &mut watch::Receiver<bool>, ms: u64) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
