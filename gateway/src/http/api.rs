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
    /// The local player's name (ignored for a Mini App request).
    #[serde(default)]
    pub player: String,
    pub text: String,
}

/// The bot's answers.
#[derive(Debug, Serialize)]
pub struct PlayResponse {
    pub replies: Vec<Reply>,
}

/// Runs a play-page message through the bot: as the Telegram user its
/// Mini App `initData` proves (`Authorization: tma <initData>`), else as a
/// local player (when the local play page is on).
pub async fn play(request: HttpRequest, state: web::Data<AppState>, body: web::Json<PlayRequest>) -> HttpResponse {
    let PlayRequest { player, text } = body.into_inner();
    let player = match speaker(&request, &state, &player) {
        Ok(player) => player,
        Err(response) => return response,
    };
    if text.chars().count() > PLAY_TEXT_CHARS_MAX {
        return HttpResponse::BadRequest()
            .json(ErrorBody::new(&format!("text must be at most {PLAY_TEXT_CHARS_MAX} characters")));
    }
    let command = PlayCommand { id: state.ids.next(), player, text };
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

/// Who a play request speaks for, or the answer refusing it.
fn speaker(request: &HttpRequest, state: &AppState, player: &str) -> Result<PlayPlayer, HttpResponse> {
    let unauthorized = |why: &str| HttpResponse::Unauthorized().json(ErrorBody::new(why));
    if let Some(header) = request.headers().get(actix_web::http::header::AUTHORIZATION) {
        let Some(auth) = state.webapp.as_ref() else {
            return Err(unauthorized("Mini App sign-in is not configured here"));
        };
        let init_data = header.to_str().ok().and_then(|value| value.strip_prefix("tma ")).unwrap_or_default();
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        return match auth.verify(init_data.trim(), now_s) {
            Ok(user) => Ok(PlayPlayer::Telegram { user_id: user.id, name: user.name }),
            Err(why) => {
                tracing::info!(%why, "Mini App request refused");
                Err(unauthorized(&format!("{why}: reopen the game from Telegram")))
            }
        };
    }
    if !state.play_enabled {
        return Err(unauthorized("open the game from Telegram (the local play page is off)"));
    }
    let name = player.trim();
    if name.is_empty() || name.chars().count() > PLAYER_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(HttpResponse::BadRequest()
            .json(ErrorBody::new(&format!("player must be 1–{PLAYER_NAME_CHARS_MAX} printable characters"))));
    }
    Ok(PlayPlayer::Local { name: name.to_owned() })
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
