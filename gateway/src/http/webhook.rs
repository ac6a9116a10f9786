//! `POST /telegram/webhook`: checks the secret header (constant time), parses
//! the update, hands it to the backend and answers. Wrong or missing secret
//! → 401; body over 1 MiB → 413; malformed JSON → 400; unknown update kinds
//! → 200 and ignored; no room even after a bounded wait, or the server
//! stopping → 503 so Telegram retries later.

use actix_web::{HttpRequest, HttpResponse, web};
use wire::update::UpdateHead;

use super::AppState;
use super::admin::constant_time_eq;
use super::api::ErrorBody;
use crate::backend::{Inbound, Refused};

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
    let update = match UpdateHead::parse(&body) {
        Ok(head) => Inbound { update_id: head.update_id, handled: head.handled() },
        Err(error) => return HttpResponse::BadRequest().json(ErrorBody::new(&format!("malformed update: {error}"))),
    };
    match state.backend.submit_update(update, body).await {
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
