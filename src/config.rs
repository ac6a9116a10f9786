//! `Settings`: the one layered configuration tree — `config/default.toml`,
//! then the file named by `STOCKBOT_CONFIG`, then environment variables
//! (the conventional names listed in the README, and `STOCKBOT__SECTION__KEY`).

use std::path::{Path, PathBuf};

use actors::config::EngineConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The defaults compiled into the binary, so it runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A secret that never prints.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_string(deserializer).map(Self)
    }
}

/// Environment values arrive typed by their look (`1` is a number, `true` a
/// boolean); a setting that is text takes them all as text.
fn lenient_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Text(String),
        Signed(i64),
        Unsigned(u64),
        Float(f64),
        Flag(bool),
    }
    Ok(match Loose::deserialize(deserializer)? {
        Loose::Text(text) => text,
        Loose::Signed(number) => number.to_string(),
        Loose::Unsigned(number) => number.to_string(),
        Loose::Float(number) => number.to_string(),
        Loose::Flag(flag) => if flag { "1" } else { "0" }.to_owned(),
    })
}

fn lenient_optional_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    lenient_string(deserializer).map(Some)
}

impl Secret {
    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Telegram settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelegramSettings {
    pub bot_token: Option<Secret>,
    #[serde(deserialize_with = "lenient_optional_string")]
    pub api_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    #[serde(deserialize_with = "lenient_optional_string")]
    pub webhook_url: Option<String>,
    #[serde(deserialize_with = "lenient_optional_string")]
    pub mode: Option<String>,
    pub rate_global_per_sec: Option<u32>,
    pub rate_chat_per_sec: Option<u32>,
    pub rate_group_per_min: Option<u32>,
    /// Public HTTPS URL of the play page as a Telegram Mini App.
    #[serde(deserialize_with = "lenient_optional_string")]
    pub webapp_url: Option<String>,
    /// Oldest Mini App `initData` accepted, by its `auth_date`.
    pub webapp_max_age_s: Option<u64>,
}

/// Oldest Mini App `initData` accepted when `TELEGRAM_WEBAPP_MAX_AGE_S` is unset.
pub const WEBAPP_MAX_AGE_S_DEFAULT: u64 = 86_400;

impl TelegramSettings {
    /// The Mini App URL, when one is configured along with a bot token.
    #[must_use]
    pub fn webapp_url(&self) -> Option<&str> {
        let token = self.bot_token.as_ref().is_some_and(|token| !token.expose().is_empty());
        self.webapp_button_url().filter(|_| token)
    }

    /// The Mini App URL for `web_app` buttons, token or not (an engine
    /// process of a split deployment draws the buttons its gateways send).
    #[must_use]
    pub fn webapp_button_url(&self) -> Option<&str> {
        self.webapp_url.as_deref().map(str::trim).filter(|url| !url.is_empty())
    }
}

/// Per-player and per-chat command limits (anti-abuse): commands beyond them
/// within a window get one polite "slow down" and are otherwise dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandLimits {
    pub player_commands_per_window: u32,
    pub chat_commands_per_window: u32,
    pub window_ms: u64,
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self { player_commands_per_window: 20, chat_commands_per_window: 60, window_ms: 10_000 }
    }
}

/// How the roles of a split deployment (and two `all` processes on one
/// database) share the work: the engine lease and the NATS streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub standby_poll_ms: u64,
    pub follow_interval_ms: u64,
    pub lease_margin_ms: u64,
    pub stop_flush_max_ms: u64,
    pub stop_drain_max_ms: u64,
    pub play_wait_ms: u64,
    pub handling_max: usize,
    pub command_stream_max_bytes: i64,
    pub command_stream_max_age_s: u64,
    pub outbox_stream_max_bytes: i64,
    pub nats_connect_wait_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            lease_ms: 2_500,
            heartbeat_ms: 500,
            standby_poll_ms: 200,
            follow_interval_ms: 100,
            lease_margin_ms: 300,
            stop_flush_max_ms: 10_000,
            stop_drain_max_ms: 10_000,
            play_wait_ms: 30_000,
            handling_max: 1_024,
            command_stream_max_bytes: 1 << 30,
            command_stream_max_age_s: 86_400,
            outbox_stream_max_bytes: 1 << 30,
            nats_connect_wait_ms: 30_000,
        }
    }
}

/// What this process does (`STOCKBOT_ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process.
    All,
    /// The stateless front: webhook, play page, API, senders.
    Gateway,
    /// The sequencer and its schedulers (active or standby).
    Engine,
}

impl Role {
    /// The name `STOCKBOT_ROLE` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Gateway => "gateway",
            Self::Engine => "engine",
        }
    }
}

/// Everything the server is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub telegram: TelegramSettings,
    #[serde(default)]
    pub limits: CommandLimits,
    #[serde(default)]
    pub cluster: ClusterSettings,
    #[serde(default, deserialize_with = "lenient_optional_string")]
    pub role: Option<String>,
    #[serde(default)]
    pub nats_url: Option<Secret>,
    #[serde(default)]
    pub database_url: Option<Secret>,
    #[serde(default)]
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key this deployment writes (one per deployment
    /// sharing a Redis; tests give each run its own).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_bind")]
    pub bind: String,
    /// HTTP worker threads (default: one per core). A gateway sharing a
    /// small machine with its neighbours does better with fewer.
    #[serde(default)]
    pub http_workers: Option<usize>,
    #[serde(default, deserialize_with = "lenient_optional_string")]
    pub admins: Option<String>,
    #[serde(default)]
    pub admin_token: Option<Secret>,
    #[serde(default, deserialize_with = "lenient_optional_string")]
    pub play: Option<String>,
    #[serde(default)]
    pub premium_price_stars: Option<u32>,
    #[serde(default, deserialize_with = "lenient_optional_string")]
    pub log_format: Option<String>,
    /// This process's name in the engine lease and in logs.
    #[serde(default, deserialize_with = "lenient_optional_string")]
    pub instance: Option<String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_redis_prefix() -> String {
    "stockbot:".to_owned()
}

fn default_bind() -> String {
    "127.0.0.1:8080".to_owned()
}

/// Longest instance name kept, in characters.
pub const INSTANCE_CHARS_MAX: usize = 40;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Universe(#[from] actors::domain::asset::UniverseError),
}

/// Conventional environment variables and the keys they set.
const CONVENTIONAL_ENV: &[(&str, &str)] = &[
    ("TELEGRAM_BOT_TOKEN", "telegram.bot_token"),
    ("TELEGRAM_API_URL", "telegram.api_url"),
    ("TELEGRAM_WEBHOOK_SECRET", "telegram.webhook_secret"),
    ("TELEGRAM_WEBHOOK_URL", "telegram.webhook_url"),
    ("TELEGRAM_MODE", "telegram.mode"),
    ("TELEGRAM_WEBAPP_URL", "telegram.webapp_url"),
    ("TELEGRAM_WEBAPP_MAX_AGE_S", "telegram.webapp_max_age_s"),
    ("TELEGRAM_RATE_GLOBAL_PER_SEC", "telegram.rate_global_per_sec"),
    ("TELEGRAM_RATE_CHAT_PER_SEC", "telegram.rate_chat_per_sec"),
    ("TELEGRAM_RATE_GROUP_PER_MIN", "telegram.rate_group_per_min"),
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("STOCKBOT_REDIS_PREFIX", "redis_prefix"),
    ("STOCKBOT_DATA_DIR", "data_dir"),
    ("STOCKBOT_BIND", "bind"),
    ("STOCKBOT_HTTP_WORKERS", "http_workers"),
    ("STOCKBOT_ADMINS", "admins"),
    ("STOCKBOT_ADMIN_TOKEN", "admin_token"),
    ("STOCKBOT_PLAY", "play"),
    ("STOCKBOT_PREMIUM_PRICE_STARS", "premium_price_stars"),
    ("STOCKBOT_LOG_FORMAT", "log_format"),
    ("STOCKBOT_INSTANCE", "instance"),
    ("STOCKBOT_ROLE", "role"),
    ("NATS_URL", "nats_url"),
];

impl Settings {
    /// Loads the layered configuration from the process environment.
    ///
    /// # Errors
    /// A file that does not parse, a value of the wrong type, or an invalid universe.
    pub fn load() -> Result<Self, ConfigError> {
        let extra = std::env::var_os("STOCKBOT_CONFIG").map(PathBuf::from);
        Self::load_from(extra.as_deref())
    }

    /// Loads the defaults, then `extra` (if any), then the environment.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(extra: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment =
            Figment::new().merge(Serialized::defaults(Self::empty_optional())).merge(Toml::string(DEFAULT_TOML));
        if let Some(path) = extra {
            figment = figment.merge(Toml::file_exact(path));
        }
        let names: Vec<&str> = CONVENTIONAL_ENV.iter().map(|(name, _)| *name).collect();
        figment = figment
            .merge(Env::raw().only(&names).map(|name| {
                let key = CONVENTIONAL_ENV
                    .iter()
                    .find(|(env, _)| name.as_str().eq_ignore_ascii_case(env))
                    .map_or(name.as_str(), |(_, key)| key);
                key.to_owned().into()
            }))
            .merge(Env::prefixed("STOCKBOT__").split("__").lowercase(true));
        let settings: Self = figment.extract().map_err(Box::new)?;
        settings.engine.universe()?;
        Ok(settings)
    }

    fn empty_optional() -> serde_json::Value {
        serde_json::json!({})
    }

    /// Whether the local play page and `/api/play` are on.
    #[must_use]
    pub fn play_enabled(&self) -> bool {
        match self.play.as_deref().map(str::trim) {
            Some("1" | "true" | "on" | "yes" | "1.0") => true,
            Some("0" | "false" | "off" | "no") => false,
            _ => self.telegram.bot_token.is_none(),
        }
    }

    /// The role asked for (`all` when unset).
    ///
    /// # Errors
    /// A role that is not `all`, `gateway` or `engine`.
    pub fn role(&self) -> Result<Role, String> {
        match self.role.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "all") => Ok(Role::All),
            Some("gateway") => Ok(Role::Gateway),
            Some("engine") => Ok(Role::Engine),
            Some(other) => Err(format!("STOCKBOT_ROLE must be all, gateway or engine, not {other:?}")),
        }
    }

    /// `DATABASE_URL`, when set and not empty.
    #[must_use]
    pub fn database_url(&self) -> Option<String> {
        self.database_url.as_ref().map(|u| u.expose().trim().to_owned()).filter(|u| !u.is_empty())
    }

    /// `NATS_URL`, when set and not empty.
    #[must_use]
    pub fn nats_url(&self) -> Option<String> {
        self.nats_url.as_ref().map(|u| u.expose().trim().to_owned()).filter(|u| !u.is_empty())
    }

    /// This process's name: `STOCKBOT_INSTANCE`, else host name and pid.
    #[must_use]
    pub fn instance_name(&self) -> String {
        if let Some(name) = self.instance.as_deref().map(str::trim).filter(|name| !name.is_empty()) {
            return name.chars().take(INSTANCE_CHARS_MAX).collect();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|host| host.trim().to_owned())
            .filter(|host| !host.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "stockbot".to_owned());
        format!("{host}-{}", std::process::id()).chars().take(INSTANCE_CHARS_MAX).collect()
    }

    /// Telegram user ids allowed admin commands.
    #[must_use]
    pub fn admin_ids(&self) -> Vec<i64> {
        self.admins.as_deref().unwrap_or("").split(',').filter_map(|id| id.trim().parse().ok()).collect()
    }
}
