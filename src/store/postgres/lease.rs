//! The engine lease on PostgreSQL (`sql/V7__engine_lease.sql`): one row
//! electing the engine that may write, fenced by an epoch. [`Fence`] is what
//! an active engine's store checks in every write transaction (group
//! commits renew the lease and store the command cursor; checkpoints and
//! snapshots only check); [`LeaseSession`] is the engine's own connection
//! that reads the lease, takes it over and beats its heart. The database's
//! clock decides expiry; a holder whose lease session is gone (a killed
//! process) frees the lease at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actors::domain::applied::CommandKey;
use actors::domain::command::Outcome;
use actors::ports::StoreError;
use deadpool_postgres::Transaction;
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;

use super::{CONNECT_TIMEOUT_MS, KEEPALIVE_IDLE_MS, pg_error};

mod sql {
    pub const RENEW: &str = include_str!("../../../sql/queries/lease/renew.sql");
    pub const CHECK: &str = include_str!("../../../sql/queries/lease/check.sql");
    pub const READ: &str = include_str!("../../../sql/queries/lease/read.sql");
    pub const TERMINATE_HOLDER: &str = include_str!("../../../sql/queries/lease/terminate_holder.sql");
    pub const TAKE: &str = include_str!("../../../sql/queries/lease/take.sql");
    pub const HEARTBEAT: &str = include_str!("../../../sql/queries/lease/heartbeat.sql");
    pub const RELEASE: &str = include_str!("../../../sql/queries/lease/release.sql");
    pub const SET_STREAM: &str = include_str!("../../../sql/queries/lease/set_stream.sql");
    pub const OUTCOMES_INSERT: &str = include_str!("../../../sql/queries/lease/outcomes_insert.sql");
    pub const OUTCOMES_AFTER: &str = include_str!("../../../sql/queries/lease/outcomes_after.sql");
    pub const OUTCOMES_PRUNE: &str = include_str!("../../../sql/queries/lease/outcomes_prune.sql");
}

/// Bounds of the lease session's waits.
const SESSION_SETTINGS: &str =
    "SET lock_timeout = '1500ms'; SET statement_timeout = '5s'; SET idle_in_transaction_session_timeout = '5s'";

/// The `application_name` of an engine's sessions: a new holder ends the
/// sessions of the one it supersedes by this name.
#[must_use]
pub fn engine_application_name(instance: &str) -> String {
    // PostgreSQL keeps 63 bytes of it.
    let name: String = format!("stockbot-engine:{instance}");
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or("stockbot-engine").to_owned()
}

/// The lease an active engine holds, as its store's writes check it.
#[derive(Debug)]
pub struct Fence {
    epoch: u64,
    lease_ms: u64,
    /// Messages of the command stream up to here are fully handled.
    cursor: AtomicU64,
    /// The newest cursor the database confirmed storing.
    stored_cursor: AtomicU64,
    /// Notices of the log's events up to here are out (0: not known, or
    /// this engine does not publish notices on the outbox).
    notices: AtomicU64,
    superseded: AtomicBool,
    /// Latest instant before a renewal that the database confirmed.
    renewed: Mutex<Instant>,
}

impl Fence {
    /// The fence of `epoch`, renewed for `lease_ms` at a time, as just
    /// taken at `taken` (an instant before the taking was sent).
    #[must_use]
    pub fn new(epoch: u64, lease_ms: u64, cursor: u64, taken: Instant) -> Arc<Self> {
        Arc::new(Self {
            epoch,
            lease_ms,
            cursor: AtomicU64::new(cursor),
            stored_cursor: AtomicU64::new(cursor),
            notices: AtomicU64::new(0),
            superseded: AtomicBool::new(false),
            renewed: Mutex::new(taken),
        })
    }

    /// The epoch held.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The lease's length.
    #[must_use]
    pub fn lease_ms(&self) -> u64 {
        self.lease_ms
    }

    /// Every stream message up to `cursor` is fully handled.
    pub fn advance_cursor(&self, cursor: u64) {
        self.cursor.fetch_max(cursor, Ordering::AcqRel);
    }

    /// Notices of every event up to `seq` are out: stored with the next
    /// renewal. Only an engine publishing its notices on the outbox says so
    /// (starting from what the last holder stored); the lease of any other
    /// forgets how far notices are out.
    pub fn advance_notices(&self, seq: u64) {
        self.notices.fetch_max(seq, Ordering::AcqRel);
    }

    /// How far notices are out, to store (0: not known).
    #[must_use]
    pub fn notices(&self) -> u64 {
        self.notices.load(Ordering::Acquire)
    }

    /// Sets the cursor, stored, to `cursor` (a stream created anew).
    fn reset_cursor(&self, cursor: u64) {
        self.cursor.store(cursor, Ordering::Release);
        self.stored_cursor.store(cursor, Ordering::Release);
    }

    /// The command cursor to store.
    #[must_use]
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// The newest cursor stored in the database (stream messages up to it
    /// are never asked for again).
    #[must_use]
    pub fn stored_cursor(&self) -> u64 {
        self.stored_cursor.load(Ordering::Acquire)
    }

    /// A write found the lease gone to a newer epoch.
    #[must_use]
    pub fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    /// Gives the lease up from within: every write from now on is refused
    /// and the election steps down (the lease then expires by itself).
    pub fn step_down(&self) {
        self.mark_superseded();
    }

    fn mark_superseded(&self) {
        self.superseded.store(true, Ordering::Release);
    }

    /// The database confirmed a renewal sent after `sent` that stored `cursor`.
    fn renewed_storing(&self, sent: Instant, cursor: u64) {
        self.stored_cursor.fetch_max(cursor, Ordering::AcqRel);
        self.renewed(sent);
    }

    /// The database confirmed a renewal sent after `sent`.
    pub fn renewed(&self, sent: Instant) {
        let mut renewed = self.renewed.lock().unwrap_or_else(PoisonError::into_inner);
        if sent > *renewed {
            *renewed = sent;
        }
    }

    /// How long the lease surely lasts yet, by this process's clock: the
    /// lease from the last confirmed renewal's sending, less `margin` (the
    /// database's expiry is never earlier). Zero once superseded.
    #[must_use]
    pub fn surely_held_for(&self, margin: Duration) -> Duration {
        if self.superseded() {
            return Duration::ZERO;
        }
        let renewed = *self.renewed.lock().unwrap_or_else(PoisonError::into_inner);
        let until = renewed + Duration::from_millis(self.lease_ms);
        until.saturating_duration_since(Instant::now()).saturating_sub(margin)
    }

    fn superseded_error(&self) -> StoreError {
        self.mark_superseded();
        StoreError::Fenced(format!("the lease of epoch {} was taken over", self.epoch))
    }

    /// In a group commit: renews the lease and stores the cursor, or fails
    /// `Fenced` (the transaction must roll back).
    pub(super) async fn renew_in(&self, txn: &Transaction<'_>) -> Result<(), StoreError> {
        let (sent, cursor) = (Instant::now(), self.cursor());
        let statement = txn.prepare_cached(sql::RENEW).await.map_err(pg_error)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&to_i64(self.epoch)?, &to_i64(self.lease_ms)?, &to_i64(cursor)?, &to_i64(self.notices())?];
        match txn.query_opt(&statement, &params).await.map_err(pg_error)? {
            Some(_) => {
                // Stored only once the transaction commits: counted as a
                // renewal of the lease (which the commit confirms), not of
                // the cursor.
                self.renewed(sent);
                Ok(())
            }
            None => Err(self.superseded_error()),
        }
    }

    /// `Fenced` once this process learnt its lease was taken over.
    ///
    /// # Errors
    /// `Fenced`, when superseded.
    pub fn refuse_if_superseded(&self) -> Result<(), StoreError> {
        if self.superseded() { Err(self.superseded_error()) } else { Ok(()) }
    }

    /// In another write (checkpoint, snapshot): the lease is still held.
    pub(super) async fn check_in(&self, txn: &Transaction<'_>) -> Result<(), StoreError> {
        let statement = txn.prepare_cached(sql::CHECK).await.map_err(pg_error)?;
        match txn.query_opt(&statement, &[&to_i64(self.epoch)?]).await.map_err(pg_error)? {
            Some(_) => Ok(()),
            None => Err(self.superseded_error()),
        }
    }
}

/// Whether and how a store may write.
#[derive(Debug, Clone, Default)]
pub enum Writes {
    /// Unchecked: a lone process or a tool on its own database.
    #[default]
    Unfenced,
    /// A standby following the log: it writes nothing (its checkpoints wait).
    Standby,
    /// An elected engine: every write checks this lease.
    Fenced(Arc<Fence>),
}

/// The write mode currently in force for a store.
#[derive(Debug, Default)]
pub struct FenceSlot(Mutex<Writes>);

impl FenceSlot {
    /// The mode in force.
    #[must_use]
    pub fn get(&self) -> Writes {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `writes` in force.
    pub fn set(&self, writes: Writes) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = writes;
    }
}

impl Writes {
    /// The lease to check, or why no write may happen at all.
    ///
    /// # Errors
    /// `Fenced` in a standby.
    pub fn fence(&self) -> Result<Option<&Fence>, StoreError> {
        match self {
            Self::Unfenced => Ok(None),
            Self::Standby => Err(StoreError::Fenced("a standby does not write".into())),
            Self::Fenced(fence) => Ok(Some(fence)),
        }
    }
}

/// `error` of a failed fenced write, or `Fenced` when the lease is no longer
/// this process's (checked in a transaction of its own).
pub(super) async fn fenced_or(client: &mut deadpool_postgres::Object, fence: &Fence, error: StoreError) -> StoreError {
    let Ok(txn) = client.transaction().await else { return error };
    match fence.check_in(&txn).await {
        Err(fenced @ StoreError::Fenced(_)) => fenced,
        _ => error,
    }
}

/// Stores the outcomes of a group commit's stream commands.
pub(super) async fn insert_outcomes(
    txn: &Transaction<'_>,
    outcomes: &[(CommandKey, Outcome)],
) -> Result<(), StoreError> {
    let (Some(first), Some(last)) =
        (outcomes.iter().map(|(key, _)| key.message).min(), outcomes.iter().map(|(key, _)| key.message).max())
    else {
        return Ok(());
    };
    let statement = txn.prepare_cached(sql::OUTCOMES_INSERT).await.map_err(pg_error)?;
    txn.execute(&statement, &[&to_i64(first)?, &to_i64(last)?, &Json(outcomes)]).await.map_err(pg_error)?;
    Ok(())
}

/// The lease as a standby sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub epoch: u64,
    pub holder: String,
    /// By the database's clock.
    pub expired: bool,
    /// The holder's lease session is connected.
    pub holder_connected: bool,
    pub remaining_ms: u64,
    pub cursor: u64,
    pub stream: String,
}

impl LeaseView {
    /// Whether a standby may take the lease now.
    #[must_use]
    pub fn is_free(&self) -> bool {
        self.expired || !self.holder_connected
    }
}

/// A lease just taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub epoch: u64,
    pub cursor: u64,
    pub stream: String,
    /// Notices of the log's events up to here were out under earlier
    /// holders (`None`: not known).
    pub notices_through: Option<u64>,
    /// An instant before the taking was sent (the lease runs from no earlier).
    pub at: Instant,
    /// Sessions of the superseded holder that were ended.
    pub sessions_ended: u64,
}

/// An engine's own connection for the lease: not pooled, so its end (the
/// process killed) frees the lease for a standby at once.
pub struct LeaseSession {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    instance: String,
}

impl Drop for LeaseSession {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl LeaseSession {
    /// Opens the session for `instance`.
    ///
    /// # Errors
    /// `Invalid` for a bad URL, `Unavailable` when the server does not answer.
    pub async fn connect(database_url: &str, instance: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            database_url.parse().map_err(|e| StoreError::Invalid(format!("bad database URL: {e}")))?;
        config
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .keepalives(true)
            .keepalives_idle(Duration::from_millis(KEEPALIVE_IDLE_MS))
            .application_name(engine_application_name(instance));
        let connect = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), config.connect(NoTls));
        let (client, connection) = connect
            .await
            .map_err(|_| StoreError::Unavailable("PostgreSQL did not answer in time".into()))?
            .map_err(pg_error)?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "lease session closed");
            }
        });
        // Never wait long on a lock or a statement: the lease is about time.
        client.batch_execute(SESSION_SETTINGS).await.map_err(pg_error)?;
        Ok(Self { client, connection, instance: instance.to_owned() })
    }

    /// Whether the session is gone (connect a new one).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The lease now.
    ///
    /// # Errors
    /// A lost connection or a schema without the lease.
    pub async fn read(&self) -> Result<LeaseView, StoreError> {
        let row = self.client.query_one(sql::READ, &[]).await.map_err(pg_error)?;
        Ok(LeaseView {
            epoch: from_i64(row.try_get(0).map_err(pg_error)?)?,
            holder: row.try_get(1).map_err(pg_error)?,
            expired: row.try_get(2).map_err(pg_error)?,
            holder_connected: row.try_get(3).map_err(pg_error)?,
            remaining_ms: from_i64(row.try_get(4).map_err(pg_error)?)?,
            cursor: from_i64(row.try_get(5).map_err(pg_error)?)?,
            stream: row.try_get(6).map_err(pg_error)?,
        })
    }

    /// Takes the lease over from `seen` (which must be free) for
    /// `lease_ms`: ends the old holder's sessions, then moves to the next
    /// epoch. `None` when another standby was quicker.
    ///
    /// # Errors
    /// A lost connection.
    pub async fn take(&self, seen: &LeaseView, lease_ms: u64) -> Result<Option<Taken>, StoreError> {
        let at = Instant::now();
        let sessions_ended = if seen.holder.is_empty() || seen.holder == self.instance {
            0
        } else {
            let name = engine_application_name(&seen.holder);
            let row = self.client.query_one(sql::TERMINATE_HOLDER, &[&name]).await.map_err(pg_error)?;
            from_i64(row.try_get(0).map_err(pg_error)?)?
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&to_i64(seen.epoch)?, &self.instance, &to_i64(lease_ms)?];
        let Some(row) = self.client.query_opt(sql::TAKE, &params).await.map_err(pg_error)? else {
            return Ok(None);
        };
        Ok(Some(Taken {
            epoch: from_i64(row.try_get(0).map_err(pg_error)?)?,
            cursor: from_i64(row.try_get(1).map_err(pg_error)?)?,
            stream: row.try_get(2).map_err(pg_error)?,
            notices_through: row.try_get::<_, Option<i64>>(3).map_err(pg_error)?.map(from_i64).transpose()?,
            at,
            sessions_ended,
        }))
    }

    /// Renews `fence`'s lease and stores its cursor.
    ///
    /// # Errors
    /// `Fenced` when the lease was taken over; a lost connection.
    pub async fn heartbeat(&self, fence: &Fence) -> Result<(), StoreError> {
        let (sent, cursor) = (Instant::now(), fence.cursor());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&to_i64(fence.epoch())?, &to_i64(fence.lease_ms())?, &to_i64(cursor)?, &to_i64(fence.notices())?];
        match self.client.query_opt(sql::HEARTBEAT, &params).await.map_err(pg_error)? {
            Some(_) => {
                fence.renewed_storing(sent, cursor);
                Ok(())
            }
            None => Err(fence.superseded_error()),
        }
    }

    /// Frees the lease of `fence` at once (a clean stop), storing its cursor.
    ///
    /// # Errors
    /// A lost connection.
    pub async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&to_i64(fence.epoch())?, &to_i64(fence.cursor())?, &to_i64(fence.notices())?];
        self.client.execute(sql::RELEASE, &params).await.map_err(pg_error)?;
        Ok(())
    }
}

/// Records that the cursor now counts in `stream`, starting at `cursor`.
pub(super) async fn set_stream(
    client: &tokio_postgres::Client,
    fence: &Fence,
    stream: &str,
    cursor: u64,
) -> Result<(), StoreError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&to_i64(fence.epoch())?, &stream, &to_i64(cursor)?];
    match client.query_opt(sql::SET_STREAM, &params).await.map_err(pg_error)? {
        Some(_) => {
            // A new stream: the cursor starts over (it may go down).
            fence.reset_cursor(cursor);
            Ok(())
        }
        None => Err(fence.superseded_error()),
    }
}

/// Outcomes of stream commands of messages after `cursor`.
pub(super) async fn outcomes_after(
    client: &tokio_postgres::Client,
    cursor: u64,
) -> Result<Vec<(CommandKey, Outcome)>, StoreError> {
    let rows = client.query(sql::OUTCOMES_AFTER, &[&to_i64(cursor)?]).await.map_err(pg_error)?;
    let mut outcomes = Vec::new();
    for row in &rows {
        let Json(part) = row.try_get::<_, Json<Vec<(CommandKey, Outcome)>>>(0).map_err(pg_error)?;
        outcomes.extend(part.into_iter().filter(|(key, _)| key.message > cursor));
    }
    Ok(outcomes)
}

/// Deletes the outcomes wholly behind the cursor.
pub(super) async fn prune_outcomes(client: &tokio_postgres::Client, cursor: u64) -> Result<u64, StoreError> {
    client.execute(sql::OUTCOMES_PRUNE, &[&to_i64(cursor)?]).await.map_err(pg_error)
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{value} does not fit a BIGINT")))
}

fn from_i64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Invalid(format!("stored {value} is negative")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_fit_postgres_and_name_the_instance() {
        assert_eq!(engine_application_name("a-1"), "stockbot-engine:a-1");
        let long = engine_application_name(&"é".repeat(60));
        assert!(long.len() <= 63 && long.starts_with("stockbot-engine:é"));
    }

    #[test]
    fn a_fence_is_surely_held_only_within_its_lease_from_the_last_renewal() {
        let fence = Fence::new(3, 2_000, 0, Instant::now());
        assert!(fence.surely_held_for(Duration::from_millis(100)) > Duration::from_millis(1_000));
        fence.advance_cursor(9);
        fence.advance_cursor(4);
        assert_eq!(fence.cursor(), 9);
        let old = Fence::new(
            3,
            2_000,
            0,
            Instant::now().checked_sub(Duration::from_millis(5_000)).unwrap_or_else(Instant::now),
        );
        assert_eq!(old.surely_held_for(Duration::ZERO), Duration::ZERO);
        fence.mark_superseded();
        assert_eq!(fence.surely_held_for(Duration::ZERO), Duration::ZERO);
    }
}
