//! `/metrics`: this role's counters in Prometheus text format.

use actix_web::{HttpResponse, web};

use super::AppState;

/// Prometheus exposition of the backend's metrics.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.backend.metrics().await)
}
