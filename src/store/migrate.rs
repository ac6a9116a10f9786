//! Schema migrations: the versioned files `sql/V{n}__name.sql` (PostgreSQL)
//! and `sql/embedded/V{n}__name.sql` (SQLite), compiled into the binary,
//! each applied once, in its own transaction, and recorded with a checksum
//! in `schema_migrations` (a file changed after it was applied is refused).

use std::time::Duration;

use actors::ports::StoreError;
use tokio_postgres::NoTls;

use super::postgres::pg_error;

/// One versioned schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// `n` of `V{n}__name.sql`; applied in increasing order.
    pub version: i32,
    /// `name` of `V{n}__name.sql`.
    pub name: &'static str,
    /// The file's SQL.
    pub sql: &'static str,
}

/// PostgreSQL migrations, in order.
pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../sql/V1__init.sql") },
    Migration { version: 2, name: "lighter_writes", sql: include_str!("../../sql/V2__lighter_writes.sql") },
    Migration { version: 3, name: "ledger_checkpoints", sql: include_str!("../../sql/V3__ledger_checkpoints.sql") },
    Migration { version: 4, name: "player_profiles", sql: include_str!("../../sql/V4__player_profiles.sql") },
    Migration { version: 5, name: "fill_journal", sql: include_str!("../../sql/V5__fill_journal.sql") },
    Migration { version: 6, name: "fill_compression", sql: include_str!("../../sql/V6__fill_compression.sql") },
    Migration { version: 7, name: "engine_lease", sql: include_str!("../../sql/V7__engine_lease.sql") },
    Migration { version: 8, name: "outcome_compression", sql: include_str!("../../sql/V8__outcome_compression.sql") },
    Migration { version: 9, name: "notices_through", sql: include_str!("../../sql/V9__notices_through.sql") },
];

/// SQLite migrations of the embedded store, in order.
pub const EMBEDDED: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../sql/embedded/V1__init.sql") },
    Migration { version: 2, name: "player_profiles", sql: include_str!("../../sql/embedded/V2__player_profiles.sql") },
    Migration {
        version: 3,
        name: "events_by_player",
        sql: include_str!("../../sql/embedded/V3__events_by_player.sql"),
    },
];

/// Key of the advisory lock that keeps two migrating processes apart.
const MIGRATION_LOCK_KEY: i64 = 0x5707_6b07_0001;

/// How long connecting to PostgreSQL may take.
const CONNECT_TIMEOUT_MS: u64 = 5_000;

const CREATE_TABLE_PG: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

const CREATE_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL DEFAULT (unixepoch()))";

/// Applies the PostgreSQL migrations not applied yet (`stockbot migrate`).
///
/// # Errors
/// `Unavailable` when the database cannot be reached; `Invalid` for a bad
/// URL, a failing migration (rolled back) or an applied file that changed.
pub async fn migrate(database_url: &str) -> Result<(), StoreError> {
    let mut config: tokio_postgres::Config =
        database_url.parse().map_err(|e| StoreError::Invalid(format!("bad database URL: {e}")))?;
    config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    let (mut client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection closed");
        }
    });
    let result = migrate_client(&mut client).await;
    drop(client);
    let _ = driver.await;
    result.map(|_| ())
}

/// Applies the PostgreSQL migrations over an open connection; returns the
/// versions applied now.
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_client(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(pg_error)?;
    let result = apply_pg(client).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(pg_error);
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply_pg(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, StoreError> {
    client.batch_execute(CREATE_TABLE_PG).await.map_err(pg_error)?;
    let rows = client.query("SELECT version, checksum FROM schema_migrations", &[]).await.map_err(pg_error)?;
    let mut done = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i32 = row.try_get(0).map_err(pg_error)?;
        let checksum: String = row.try_get(1).map_err(pg_error)?;
        done.push((version, checksum));
    }
    let mut applied = Vec::new();
    for migration in POSTGRES {
        if already_applied(migration, &done)? {
            continue;
        }
        let txn = client.transaction().await.map_err(pg_error)?;
        txn.batch_execute(migration.sql).await.map_err(|e| failed(migration, &pg_error(e)))?;
        txn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &checksum(migration.sql)],
        )
        .await
        .map_err(pg_error)?;
        txn.commit().await.map_err(pg_error)?;
        tracing::info!(version = migration.version, name = migration.name, "migration applied");
        applied.push(migration.version);
    }
    Ok(applied)
}

/// Applies the embedded store's migrations; returns the versions applied now.
///
/// # Errors
/// `Invalid` for a failing migration (rolled back) or an applied file that
/// changed; `Unavailable` when the file cannot be written.
pub fn migrate_sqlite(conn: &mut rusqlite::Connection) -> Result<Vec<i32>, StoreError> {
    use super::embedded::sqlite_error;
    let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sqlite_error)?;
    txn.execute_batch(CREATE_TABLE_SQLITE).map_err(sqlite_error)?;
    let done = {
        let mut statement = txn.prepare("SELECT version, checksum FROM schema_migrations").map_err(sqlite_error)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, i32>(0)?, row.get::<_, String>(1)?)))
            .map_err(sqlite_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)?
    };
    txn.commit().map_err(sqlite_error)?;
    let mut applied = Vec::new();
    for migration in EMBEDDED {
        if already_applied(migration, &done)? {
            continue;
        }
        let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sqlite_error)?;
        txn.execute_batch(migration.sql).map_err(|e| failed(migration, &sqlite_error(e)))?;
        txn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (?1, ?2, ?3)",
            rusqlite::params![migration.version, migration.name, checksum(migration.sql)],
        )
        .map_err(sqlite_error)?;
        txn.commit().map_err(sqlite_error)?;
        applied.push(migration.version);
    }
    Ok(applied)
}

/// Whether `migration` is recorded as applied; an applied file whose text
/// changed since is an error (edit schemas with a new version instead).
fn already_applied(migration: &Migration, done: &[(i32, String)]) -> Result<bool, StoreError> {
    match done.iter().find(|(version, _)| *version == migration.version) {
        None => Ok(false),
        Some((_, recorded)) if *recorded == checksum(migration.sql) => Ok(true),
        Some(_) => Err(StoreError::Invalid(format!(
            "migration V{}__{} changed after it was applied; add a new version instead",
            migration.version, migration.name
        ))),
    }
}

fn failed(migration: &Migration, error: &StoreError) -> StoreError {
    StoreError::Invalid(format!("migration V{}__{} failed: {error}", migration.version, migration.name))
}

/// FNV-1a (64 bit) of a file's text, in hex: detects edits, not attacks.
/// The checksum recorded for an applied migration file (FNV-1a, hex).
#[must_use]
pub fn checksum(sql: &str) -> String {
    let hash = sql
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Every `V{n}__name.sql` in a directory, as (n, name).
    fn files(dir: &str) -> Vec<(i32, String)> {
        let mut found: Vec<(i32, String)> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let stem = name.strip_prefix('V')?.strip_suffix(".sql")?.to_owned();
                let (version, label) = stem.split_once("__")?;
                Some((version.parse().unwrap(), label.to_owned()))
            })
            .collect();
        found.sort();
        found
    }

    fn listed(migrations: &[Migration]) -> Vec<(i32, String)> {
        migrations.iter().map(|m| (m.version, m.name.to_owned())).collect()
    }

    #[test]
    fn every_migration_file_is_compiled_in_order() {
        let root = env!("CARGO_MANIFEST_DIR");
        assert_eq!(files(&format!("{root}/sql")), listed(POSTGRES));
        assert_eq!(files(&format!("{root}/sql/embedded")), listed(EMBEDDED));
        for migrations in [POSTGRES, EMBEDDED] {
            assert!(migrations.windows(2).all(|w| w[0].version < w[1].version));
        }
    }

    #[test]
    fn sqlite_migrations_apply_once() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        assert_eq!(migrate_sqlite(&mut conn).unwrap(), vec![1, 2, 3]);
        assert!(migrate_sqlite(&mut conn).unwrap().is_empty());
        conn.execute("UPDATE schema_migrations SET checksum = 'x'", []).unwrap();
        assert!(matches!(migrate_sqlite(&mut conn), Err(StoreError::Invalid(_))));
    }
}
