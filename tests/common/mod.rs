//! Black-box helpers: start the real `stockbot` binary on a free port against
//! a fresh Postgres database or a temp data dir, and talk to it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

pub mod cluster;
pub mod fake_telegram;
pub mod proxy;
pub mod rig;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The Postgres server the tests use.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database on the local server; returns its URL.
pub fn fresh_database(tag: &str) -> String {
    let name = format!("stockbot_{tag}_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
    let admin = postgres_admin_url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    });
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base).to_owned();
    format!("{base}/{name}")
}

/// Drops the database at `url` (made by `fresh_database`), sessions and
/// all; best effort: a test's cleanup never fails it.
pub fn drop_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else { return };
    if !name.starts_with("stockbot_") {
        return;
    }
    let admin = postgres_admin_url();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    runtime.block_on(async {
        if let Ok((client, connection)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    });
}

/// Drops its database (a `fresh_database` URL) when the test ends, passed or failed.
pub struct DatabaseGuard(pub String);

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        drop_database(&self.0);
    }
}

/// A fresh database with the migrations applied by `stockbot migrate`.
pub fn migrated_database(tag: &str) -> String {
    let url = fresh_database(tag);
    let migrate =
        Command::new(env!("CARGO_BIN_EXE_stockbot")).arg("migrate").env("DATABASE_URL", &url).status().unwrap();
    assert!(migrate.success(), "stockbot migrate failed");
    url
}

/// A fresh temp directory for the embedded store.
pub fn fresh_data_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stockbot_{tag}_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `stockbot serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts the binary with `env` and waits for its "listening on" line.
    pub fn start(env: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stockbot"));
        command
            .arg("serve")
            .env("STOCKBOT_BIND", "127.0.0.1:0")
            .env("STOCKBOT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("STOCKBOT_PLAY", "1")
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("TELEGRAM_BOT_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start stockbot");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(address) = line.strip_prefix("stockbot listening on ") {
                break address.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().unwrap()
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
    }

    /// Sends a play-page message; returns the reply texts (or the HTTP error).
    pub fn play(&self, client: &reqwest::blocking::Client, player: &str, text: &str) -> Result<Vec<String>, String> {
        let response = client
            .post(format!("{}/api/play", self.base))
            .json(&serde_json::json!({"player": player, "text": text}))
            .send()
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body: Value = response.json().map_err(|e| e.to_string())?;
        Ok(body["replies"].as_array().unwrap().iter().map(|r| r["text"].as_str().unwrap().to_owned()).collect())
    }

    /// GET an admin endpoint with the token.
    pub fn admin(&self, client: &reqwest::blocking::Client, path: &str) -> (u16, Value) {
        let response = client.get(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN).send().unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses "🟢 Bought 10 ACME at …" / "🔴 Sold 3 ACME at …" into (signed qty, ticker).
pub fn parse_fill(text: &str) -> Option<(i64, String)> {
    let mut words = text.split_whitespace();
    let _emoji = words.next()?;
    let verb = words.next()?;
    let qty: i64 = words.next()?.parse().ok()?;
    let ticker = words.next()?.to_owned();
    match verb {
        "Bought" => Some((qty, ticker)),
        "Sold" => Some((-qty, ticker)),
        _ => None,
    }
}
