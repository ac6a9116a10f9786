//! `POST /telegram/webhook`: checks the secret header (constant time), parses
//! the update, hands it to the backend and answers. Wrong or missing secret
//! → 401; body over 1 MiB → 413; malformed JSON → 400; unknown update kinds
//! → 200 and ignored; no room even after a bounded wait, or the server
//! stopping → 503 so Telegram retries later.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use teloxide_core::types::Update;

use super::AppState;
use super::admin::constant_time_eq;
use super::api::ErrorBody;
use crate::backend::Refused;

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
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => return HttpResponse::BadRequest().json(ErrorBody::new(&format!("malformed update: {error}"))),
    };
    let raw: Arc<[u8]> = Arc::from(body.as_ref());
    match state.backend.submit_update(update, raw).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(refused) => {
            let why = match refused {
                Refused::Full => "busy; retry later",
                Refused::Stopping => "stopping; retry later",
                Refused::Unavailable => "temporarily unavailable; retry later",
            };
            HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "5")).json(ErrorBody::new(why))
        }
    }
}
