//! The HTTP interface (actix-web): health, metrics, the local play page and
//! its JSON API, the admin API. Thin: every handler calls the bot or engine.

pub mod admin;
pub mod api;
pub mod health;
pub mod metrics;
pub mod stream;
pub mod webhook;

use std::sync::Arc;

use actix_web::web;
use actors::ports::Store;

use crate::bot::Bot;
use crate::telegram::ingest::Ingest;
use crate::telegram::sender::SenderHandle;

/// Largest request body accepted, in bytes (Telegram updates are far smaller).
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub bot: Bot,
    pub store: Arc<dyn Store>,
    /// Bearer token of the admin API; `None` = admin API off (404).
    pub admin_token: Option<String>,
    pub play_enabled: bool,
    /// Expected `X-Telegram-Bot-Api-Secret-Token`; `None` = webhook refuses all.
    pub webhook_secret: Option<String>,
    /// Where webhook updates go; `None` without a bot token.
    pub ingest: Option<Ingest>,
    /// The Bot API sender (for its metrics).
    pub sender: Option<SenderHandle>,
    /// Live prices for `/api/stream`.
    pub prices: Option<tokio::sync::broadcast::Sender<std::sync::Arc<str>>>,
}

/// Registers every route.
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
        .route("/telegram/webhook", web::post().to(webhook::webhook));
    if state.play_enabled {
        config.route("/", web::get().to(api::play_page)).route("/api/play", web::post().to(api::play));
    }
}
