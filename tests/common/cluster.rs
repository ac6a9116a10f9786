//! A split deployment of real binaries on loopback: a NATS server with
//! JetStream of its own (free port, temp store dir), a fresh PostgreSQL
//! database, a Redis key prefix of its own, the fake Bot API, `stockbot`
//! engines and gateways. Processes can be killed, paused, resumed and
//! started again; players trade through the gateways' webhooks meanwhile.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fake_telegram::FakeTelegram;
use super::rig::{DataDir, SECRET};
use super::{ADMIN_TOKEN, Server, fresh_database};

/// The engine lease the cluster runs with (the default).
pub const LEASE_MS: u64 = 2_500;

static PREFIXES: AtomicU32 = AtomicU32::new(0);

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether something accepts TCP connections on `port`.
fn answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// The `nats-server` binary: `$NATS_SERVER`, else the Debian package's.
fn nats_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("nats-server not found: install it (Debian: nats-server) or set NATS_SERVER");
}

/// A NATS server with JetStream on its own port and store directory; it can
/// be killed and started again on both.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: DataDir,
}

impl Nats {
    pub fn start() -> Self {
        let store = DataDir(super::fresh_data_dir("nats"));
        let mut nats = Self { child: None, port: free_port(), store };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "NATS is running");
        let child = Command::new(nats_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers(self.port) {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` (e.g. "STOP", "CONT") to `child`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

/// Where an engine says it stands (`/readyz`): `None` when it does not answer.
pub fn engine_phase(client: &reqwest::blocking::Client, base: &str) -> Option<String> {
    let response = client.get(format!("{base}/readyz")).timeout(Duration::from_millis(500)).send().ok()?;
    let ready = response.status().is_success();
    let body = response.text().ok()?;
    Some(if ready { "active".to_owned() } else { body })
}

/// Everything of one split deployment but its processes' lifetimes.
pub struct Cluster {
    pub nats: Nats,
    pub fake: FakeTelegram,
    pub database_url: String,
    pub redis_prefix: String,
    pub engines: Vec<Option<Server>>,
    pub gateways: Vec<Option<Server>>,
    /// Environment every process gets on top of the cluster's own.
    pub extra_env: Vec<(&'static str, String)>,
}

impl Cluster {
    /// NATS, the database, the fake Bot API; `engines` engines and
    /// `gateways` gateways started (the first engine becomes active).
    pub fn start(engines: usize, gateways: usize) -> Self {
        Self::start_with(engines, gateways, Vec::new())
    }

    /// `start`, every process also getting `extra_env`.
    pub fn start_with(engines: usize, gateways: usize, extra_env: Vec<(&'static str, String)>) -> Self {
        let nats = Nats::start();
        let fake = FakeTelegram::start();
        let database_url = fresh_database("failover");
        let redis_prefix =
            format!("stockbot-test:failover:{}:{}:", std::process::id(), PREFIXES.fetch_add(1, Ordering::SeqCst));
        let mut cluster =
            Self { nats, fake, database_url, redis_prefix, engines: Vec::new(), gateways: Vec::new(), extra_env };
        for index in 0..engines {
            let engine = cluster.start_engine(index);
            cluster.engines.push(Some(engine));
            if index == 0 {
                cluster.wait_active(Duration::from_secs(60));
            }
        }
        for index in 0..gateways {
            let gateway = cluster.start_gateway(index);
            cluster.gateways.push(Some(gateway));
        }
        cluster
    }

    /// What every process shares.
    fn common_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.fake.env();
        env.extend([
            ("NATS_URL", self.nats.url()),
            ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            ("STOCKBOT_REDIS_PREFIX", self.redis_prefix.clone()),
            ("TELEGRAM_MODE", "webhook".to_owned()),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET.to_owned()),
            ("TELEGRAM_RATE_GLOBAL_PER_SEC", "5000".to_owned()),
            ("TELEGRAM_RATE_CHAT_PER_SEC", "1000".to_owned()),
            ("TELEGRAM_RATE_GROUP_PER_MIN", "10000".to_owned()),
            // Tests trade fast and a lot: no throttle, no gates, deep pockets.
            ("STOCKBOT__LIMITS__PLAYER_COMMANDS_PER_WINDOW", "100000".to_owned()),
            ("STOCKBOT__LIMITS__CHAT_COMMANDS_PER_WINDOW", "100000".to_owned()),
            ("STOCKBOT__GAME__GATED", "false".to_owned()),
            // Quoted: figment reads a bare number as an integer, money is a decimal string.
            ("STOCKBOT__MARKET__STARTING_CASH", "\"100000000\"".to_owned()),
            ("STOCKBOT__CLUSTER__COMMAND_STREAM_MAX_BYTES", "268435456".to_owned()),
            ("STOCKBOT__CLUSTER__OUTBOX_STREAM_MAX_BYTES", "268435456".to_owned()),
            ("RUST_LOG", "warn,stockbot::cluster=info".to_owned()),
        ]);
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts engine `index` (named `engine-{index}`).
    pub fn start_engine(&self, index: usize) -> Server {
        let mut env = self.common_env();
        env.extend([
            ("STOCKBOT_ROLE", "engine".to_owned()),
            ("DATABASE_URL", self.database_url.clone()),
            ("STOCKBOT_INSTANCE", format!("engine-{index}")),
        ]);
        Server::start(&env)
    }

    /// Starts gateway `index` (named `gateway-{index}`).
    pub fn start_gateway(&self, index: usize) -> Server {
        let mut env = self.common_env();
        env.extend([("STOCKBOT_ROLE", "gateway".to_owned()), ("STOCKBOT_INSTANCE", format!("gateway-{index}"))]);
        Server::start(&env)
    }

    /// The webhook bases of the gateways that run.
    pub fn gateway_bases(&self) -> Vec<String> {
        self.gateways.iter().flatten().map(|gateway| gateway.base.clone()).collect()
    }

    /// Indices of the engines that say they are active now.
    pub fn active_engines(&self, client: &reqwest::blocking::Client) -> Vec<usize> {
        self.engines
            .iter()
            .enumerate()
            .filter_map(|(index, engine)| {
                let engine = engine.as_ref()?;
                (engine_phase(client, &engine.base).as_deref() == Some("active")).then_some(index)
            })
            .collect()
    }

    /// Waits until exactly one engine says it is active; returns it.
    pub fn wait_active(&self, timeout: Duration) -> usize {
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            let active = self.active_engines(&client);
            if let [one] = active.as_slice() {
                return *one;
            }
            assert!(Instant::now() < deadline, "no single active engine within {timeout:?}: {active:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until an engine other than `not` is active; returns it.
    pub fn wait_active_other(&self, not: usize, timeout: Duration) -> usize {
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(other) = self.active_engines(&client).into_iter().find(|index| *index != not) {
                return other;
            }
            assert!(Instant::now() < deadline, "no engine took over from engine-{not} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until engine `index` answers and says it stands by.
    pub fn wait_standby(&self, index: usize, timeout: Duration) {
        let client = reqwest::blocking::Client::new();
        let engine = self.engines[index].as_ref().unwrap();
        let deadline = Instant::now() + timeout;
        while engine_phase(&client, &engine.base).as_deref() != Some("standby") {
            assert!(Instant::now() < deadline, "engine-{index} did not stand by within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of engine `index`.
    pub fn kill_engine(&mut self, index: usize) {
        if let Some(engine) = self.engines[index].take() {
            engine.kill();
        }
    }

    /// kill -9 of gateway `index`.
    pub fn kill_gateway(&mut self, index: usize) {
        if let Some(gateway) = self.gateways[index].take() {
            gateway.kill();
        }
    }

    /// An admin GET through the first gateway that answers it.
    pub fn admin(&self, client: &reqwest::blocking::Client, path: &str) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for gateway in self.gateways.iter().flatten() {
                let response = client.get(format!("{}{path}", gateway.base)).bearer_auth(ADMIN_TOKEN).send();
                if let Ok(response) = response {
                    let status = response.status().as_u16();
                    if status != 503 && status != 504 {
                        return (status, response.json().unwrap_or(Value::Null));
                    }
                }
            }
            assert!(Instant::now() < deadline, "no gateway answered {path}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The keys under `prefix` are removed (SCAN inside one script: no `KEYS`
/// over the whole server); what the processes left behind must not pile up
/// in the shared Redis from run to run.
fn delete_redis_keys(prefix: &str) {
    use fred::prelude::{ClientLike, LuaInterface};
    const DELETE_LUA: &str = "local cursor, n = '0', 0 \
        repeat local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 10000) \
        cursor = page[1] for _, key in ipairs(page[2]) do redis.call('UNLINK', key) n = n + 1 end \
        until cursor == '0' return n";
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let Ok(config) = fred::prelude::Config::from_url("redis://127.0.0.1:6379") else { return };
        let Ok(client) = fred::prelude::Builder::from_config(config).build() else { return };
        if client.init().await.is_ok() {
            let _: Result<i64, _> = client.eval(DELETE_LUA, Vec::<String>::new(), format!("{prefix}*")).await;
            let _ = client.quit().await;
        }
    });
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in self.engines.iter_mut().chain(self.gateways.iter_mut()) {
            if let Some(server) = server.take() {
                server.kill();
            }
        }
        delete_redis_keys(&self.redis_prefix);
        super::drop_database(&self.database_url);
    }
}
