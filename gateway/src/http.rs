//! The HTTP front (actix-web): the Telegram webhook, health and metrics, the
//! local play page and its JSON API, the admin API. Thin: every handler
//! checks its input and hands off to the [`Backend`].

pub mod admin;
pub mod api;
pub mod health;
pub mod metrics;
pub mod stream;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::web;

use crate::backend::Backend;

/// Largest request body accepted, in bytes (Telegram updates are far smaller).
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    /// Bearer token of the admin API; `None` = admin API off (404).
    pub admin_token: Option<String>,
    pub play_enabled: bool,
    /// Expected `X-Telegram-Bot-Api-Secret-Token`; `None` = webhook refuses all.
    pub webhook_secret: Option<String>,
    /// Makes ids for commands received here (unique across instances).
    pub ids: Arc<CommandIds>,
    /// Checks Mini App `initData`; `None` = no Mini App.
    pub webapp: Option<crate::webapp::WebAppAuth>,
}

/// Ids for commands without one of their own (play-page messages): this
/// instance's name, its start time and a counter, so they never repeat.
#[derive(Debug)]
pub struct CommandIds {
    prefix: String,
    next: AtomicU64,
}

impl CommandIds {
    /// Ids beginning with `instance` and the current time.
    #[must_use]
    pub fn new(instance: &str) -> Self {
        let started_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
        let instance: String = instance.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
        Self { prefix: format!("{instance}-{started_ms:x}"), next: AtomicU64::new(0) }
    }

    /// A fresh id.
    #[must_use]
    pub fn next(&self) -> String {
        format!("{}-{:x}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Registers every route of a front that takes players.
pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    config
        .app_data(web::Data::new(state.clone()))
        .app_data(api::json_config())
        .app_data(web::PayloadConfig::new(BODY_BYTES_MAX))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/api/market", web::get().to(api::market))
        .route("/api/chart", web::get().to(api::chart))
        .route("/api/stream", web::get().to(stream::stream))
        .route("/admin/players/{player}", web::get().to(admin::player))
        .route("/admin/audit", web::get().to(admin::audit))
        .route("/admin/engine", web::get().to(admin::engine))
        .route("/telegram/webhook", web::post().to(webhook::webhook));
    // The Mini App is the play page inside Telegram.
    if state.play_enabled || state.webapp.is_some() {
        config.route("/", web::get().to(api::play_page)).route("/api/play", web::post().to(api::play));
    }
}

/// Registers the routes of an engine process (no players: health,
/// metrics, which engine is active).
pub fn engine_routes(config: &mut web::ServiceConfig, state: &AppState) {
    config
        .app_data(web::Data::new(state.clone()))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/admin/engine", web::get().to(admin::engine));
}

/// The HTTP response of an engine's answer.
#[must_use]
pub fn respond(answer: wire::Answer) -> actix_web::HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = actix_web::HttpResponse::build(status);
    response.content_type(answer.content_type);
    if let Some(cache) = answer.cache_control {
        response.insert_header(("Cache-Control", cache));
    }
    response.body(answer.body)
}
