//! The play page and the JSON API it uses: `GET /`, `GET /api/market`,
//! `POST /api/play` (the same command path as Telegram, for local players).

use actix_web::error::JsonPayloadError;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{AppState, BODY_BYTES_MAX};
use crate::bot::{Speaker, local_player_id};
use crate::telegram::reply::Reply;

/// Longest local player name accepted, in characters.
pub const PLAYER_NAME_CHARS_MAX: usize = 32;

/// JSON bodies: at most 1 MiB (413 past that), malformed → 400 with a reason.
#[must_use]
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(BODY_BYTES_MAX).error_handler(|error, _req: &HttpRequest| {
        let response = match &error {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                HttpResponse::PayloadTooLarge().json(ErrorBody::new("request body too large"))
            }
            JsonPayloadError::ContentType => {
                HttpResponse::UnsupportedMediaType().json(ErrorBody::new("expected Content-Type: application/json"))
            }
            other => HttpResponse::BadRequest().json(ErrorBody::new(&format!("malformed JSON: {other}"))),
        };
        actix_web::error::InternalError::from_response(error, response).into()
    })
}

/// `{"error": "…"}`
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    /// An error body with a message.
    #[must_use]
    pub fn new(message: &str) -> Self {
        Self { error: message.to_owned() }
    }
}

#[derive(Debug, Serialize)]
struct MarketAsset {
    ticker: String,
    name: String,
    category: String,
    price: String,
    bid: String,
    ask: String,
    halted: bool,
}

#[derive(Debug, Serialize)]
struct MarketBody {
    assets: Vec<MarketAsset>,
}

/// Every asset with its price.
pub async fn market(state: web::Data<AppState>) -> HttpResponse {
    let engine = state.bot.engine();
    let Ok(quotes) = engine.quotes().await else {
        return HttpResponse::ServiceUnavailable().json(ErrorBody::new("engine unavailable"));
    };
    let assets = engine
        .universe()
        .assets()
        .iter()
        .zip(&quotes)
        .map(|(spec, quote)| {
            let mid = rust_decimal::Decimal::from_f64_retain(quote.mid)
                .map(|mid| mid.round_dp(2))
                .unwrap_or((quote.bid + quote.ask) / rust_decimal::Decimal::TWO);
            MarketAsset {
                ticker: spec.ticker.to_string(),
                name: spec.name.clone(),
                category: spec.category.clone(),
                price: format!("{mid:.2}"),
                bid: format!("{:.2}", quote.bid),
                ask: format!("{:.2}", quote.ask),
                halted: quote.halted,
            }
        })
        .collect();
    HttpResponse::Ok().json(MarketBody { assets })
}

/// A play-page message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayRequest {
    pub player: String,
    pub text: String,
}

/// The bot's answers.
#[derive(Debug, Serialize)]
pub struct PlayResponse {
    pub replies: Vec<Reply>,
}

/// Runs a local player's message through the bot.
pub async fn play(state: web::Data<AppState>, body: web::Json<PlayRequest>) -> HttpResponse {
    let PlayRequest { player, text } = body.into_inner();
    let name = player.trim();
    if name.is_empty() || name.chars().count() > PLAYER_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return HttpResponse::BadRequest()
            .json(ErrorBody::new(&format!("player must be 1–{PLAYER_NAME_CHARS_MAX} printable characters")));
    }
    let speaker = Speaker { player: local_player_id(name), chat: None, name: name.to_owned() };
    let replies = state.bot.handle_text(&speaker, &text).await;
    HttpResponse::Ok().json(PlayResponse { replies })
}

/// `?ticker=ACME&range=1d`
#[derive(Debug, Deserialize)]
pub struct ChartQuery {
    pub ticker: String,
    #[serde(default)]
    pub range: Option<String>,
}

/// A chart as PNG (the play page shows the same picture Telegram gets).
pub async fn chart(state: web::Data<AppState>, query: web::Query<ChartQuery>) -> HttpResponse {
    let text = format!("/chart {} {}", query.ticker, query.range.as_deref().unwrap_or("1d"));
    let Ok(crate::telegram::command::BotCommand::Chart { ticker, range }) =
        crate::telegram::command::parse(&text, None)
    else {
        return HttpResponse::BadRequest().json(ErrorBody::new("use ?ticker=ACME&range=1h|1d|1w"));
    };
    match state.bot.chart_png(ticker, range).await {
        Ok(png) => {
            HttpResponse::Ok().content_type("image/png").insert_header(("Cache-Control", "max-age=30")).body(png)
        }
        Err(reply) => HttpResponse::NotFound().json(ErrorBody::new(&reply.text)),
    }
}

/// The local play page.
pub async fn play_page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("play.html"))
}
