//! The play page and the JSON API it uses: `GET /`, `GET /api/market`,
//! `GET /api/chart`, `POST /api/play` (the same command path as Telegram,
//! for local players).

use actix_web::error::JsonPayloadError;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use wire::{PlayCommand, PlayPlayer, Query, Reply};

use super::{AppState, BODY_BYTES_MAX, respond};
use crate::backend::PlayFailure;

/// Longest local player name accepted, in characters.
pub const PLAYER_NAME_CHARS_MAX: usize = 32;
/// Longest play-page message accepted, in characters (Telegram's own limit).
pub const PLAY_TEXT_CHARS_MAX: usize = 4_096;

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

/// Every asset with its price.
pub async fn market(state: web::Data<AppState>) -> HttpResponse {
    respond(state.backend.query(Query::Market).await)
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
    if text.chars().count() > PLAY_TEXT_CHARS_MAX {
        return HttpResponse::BadRequest()
            .json(ErrorBody::new(&format!("text must be at most {PLAY_TEXT_CHARS_MAX} characters")));
    }
    let command = PlayCommand { id: state.ids.next(), player: PlayPlayer::Local { name: name.to_owned() }, text };
    match state.backend.play(command).await {
        Ok(replies) => {
            HttpResponse::Ok().json(PlayResponse { replies: replies.into_iter().map(Reply::without_png).collect() })
        }
        Err(PlayFailure::TimedOut) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(ErrorBody::new("still processing: the game is slow to answer right now; check again in a moment")),
        Err(PlayFailure::Unavailable(why)) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(ErrorBody::new(&format!("temporarily unavailable ({why}); nothing was done"))),
    }
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
    let ChartQuery { ticker, range } = query.into_inner();
    respond(state.backend.query(Query::Chart { ticker, range }).await)
}

/// The local play page.
pub async fn play_page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("play.html"))
}
