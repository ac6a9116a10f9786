//! `POST /telegram/webhook`: checks the secret header (constant time), parses
//! the update, hands it to ingest and answers at once. Wrong or missing
//! secret → 401; body over 1 MiB → 413; malformed JSON → 400; unknown update
//! kinds → 200 and ignored; ingest full, or the server stopping → 503 so
//! Telegram retries later.

use actix_web::{HttpRequest, HttpResponse, web};
use teloxide_core::types::Update;

use super::AppState;
use super::admin::constant_time_eq;
use super::api::ErrorBody;
use crate::telegram::ingest::Refused;

/// The header Telegram sends the webhook secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Receives one update.
pub async fn webhook(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let given = request.headers().get(SECRET_HEADER).map(actix_web::http::header::HeaderValue::as_bytes);
    let authorized = match (state.webhook_secret.as_deref(), given) {
        (Some(expected), Some(given)) => constant_time_eq(given, expected.as_bytes()),
        _ => false,
    };
    if !authorized {
        return HttpResponse::Unauthorized().json(ErrorBody::new("wrong or missing secret token"));
    }
    let Some(ingest) = state.ingest.as_ref() else {
        return HttpResponse::ServiceUnavailable().json(ErrorBody::new("Telegram is not configured"));
    };
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => return HttpResponse::BadRequest().json(ErrorBody::new(&format!("malformed update: {error}"))),
    };
    match ingest.offer(update).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(Refused::Full) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(ErrorBody::new("busy; retry later")),
        Err(Refused::Stopping) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(ErrorBody::new("stopping; retry later")),
    }
}
