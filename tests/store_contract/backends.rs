//! The stores under contract, each behind one small harness: a fresh store
//! per test (a fresh PostgreSQL database, a fresh temporary directory),
//! reopening it from its storage, and tampering with a stored balance
//! behind the store's back. Databases are dropped when the harness is,
//! also when a test fails.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actors::domain::ids::PlayerId;
use actors::ports::memory::MemoryStore;
use actors::ports::{EventBatch, Store};
use rust_decimal::Decimal;
use stockbot::store::{EmbeddedStore, PostgresStore};

/// A store implementation under test.
pub trait Backend: Sized {
    /// Opens a fresh, empty store.
    async fn create() -> Self;
    /// The store.
    fn store(&self) -> Arc<dyn Store>;
    /// Drops every handle to the store and opens it again from its storage.
    async fn reopen(&mut self);
    /// Adds `delta` to a player's stored cash without going through the log.
    async fn tamper_cash(&mut self, player: PlayerId, delta: Decimal);
    /// Ids of the stored resting orders, ascending (`None`: not kept apart).
    async fn resting_orders(&self) -> Option<Vec<u64>>;
}

// ---- in memory (the reference) ------------------------------------------

pub struct Memory {
    store: MemoryStore,
}

impl Backend for Memory {
    async fn create() -> Self {
        Self { store: MemoryStore::new() }
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn reopen(&mut self) {
        // Nothing is durable in memory; the same store stands in for a reopened one.
    }

    async fn tamper_cash(&mut self, player: PlayerId, delta: Decimal) {
        // The only way in: a ledger without the events that would explain it.
        let mut account = self.store.load_account(player).await.unwrap().unwrap();
        account.cash += delta;
        let batch = EventBatch { accounts: vec![(player, account)], ..EventBatch::default() };
        self.store.append(Arc::new(batch)).await.unwrap();
    }

    async fn resting_orders(&self) -> Option<Vec<u64>> {
        None
    }
}

// ---- PostgreSQL -----------------------------------------------------------

/// The server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is needed by these tests (TEST_DATABASE_URL): {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh database, dropped with this value.
pub struct FreshDatabase {
    pub name: String,
    pub url: String,
}

impl FreshDatabase {
    pub async fn create() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("stockbot_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let admin = admin_client(&admin_url()).await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_database(&admin_url(), &name);
        Self { name, url }
    }

    /// A plain connection to the database.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a runtime of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let admin = admin_client(&admin_url()).await;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

pub struct Postgres {
    store: Option<PostgresStore>,
    // Declared last: dropped after the store's pool.
    database: FreshDatabase,
}

/// Connections per test store.
const POOL_SIZE: usize = 4;

impl Backend for Postgres {
    async fn create() -> Self {
        let database = FreshDatabase::create().await;
        let store = PostgresStore::connect_and_migrate(&database.url, POOL_SIZE).await.unwrap();
        Self { store: Some(store), database }
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone().unwrap())
    }

    async fn reopen(&mut self) {
        self.store = None;
        self.store = Some(PostgresStore::connect(&self.database.url, POOL_SIZE).await.unwrap());
    }

    async fn tamper_cash(&mut self, player: PlayerId, delta: Decimal) {
        let client = self.database.client().await;
        let updated = client
            .execute("UPDATE players SET cash = cash + $1 WHERE player = $2", &[&delta, &player.0])
            .await
            .unwrap();
        assert_eq!(updated, 1);
    }

    async fn resting_orders(&self) -> Option<Vec<u64>> {
        let client = self.database.client().await;
        let rows = client.query("SELECT order_id FROM orders ORDER BY order_id", &[]).await.unwrap();
        Some(rows.iter().map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap()).collect())
    }
}

// ---- embedded (SQLite) ----------------------------------------------------

pub struct Embedded {
    store: Option<EmbeddedStore>,
    dir: tempfile::TempDir,
}

impl Backend for Embedded {
    async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        Self { store: Some(store), dir }
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone().unwrap())
    }

    async fn reopen(&mut self) {
        self.store = None;
        self.store = Some(EmbeddedStore::open(self.dir.path()).await.unwrap());
    }

    async fn tamper_cash(&mut self, player: PlayerId, delta: Decimal) {
        let path = self.dir.path().join(stockbot::store::embedded::FILE_NAME);
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let cash: String =
                conn.query_row("SELECT cash FROM players WHERE player = ?1", [player.0], |row| row.get(0)).unwrap();
            let tampered = (Decimal::from_str(&cash).unwrap() + delta).to_string();
            conn.execute("UPDATE players SET cash = ?1 WHERE player = ?2", rusqlite::params![tampered, player.0])
                .unwrap();
        })
        .await
        .unwrap();
    }

    async fn resting_orders(&self) -> Option<Vec<u64>> {
        let path = self.dir.path().join(stockbot::store::embedded::FILE_NAME);
        let ids = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut statement = conn.prepare("SELECT order_id FROM orders ORDER BY order_id").unwrap();
            let ids = statement.query_map([], |row| row.get::<_, i64>(0)).unwrap();
            ids.map(|id| u64::try_from(id.unwrap()).unwrap()).collect::<Vec<u64>>()
        })
        .await
        .unwrap();
        Some(ids)
    }
}
