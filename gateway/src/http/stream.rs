//! `GET /api/stream`: live prices as server-sent events, one `prices` event
//! per market minute. A slow page skips minutes; it never holds anyone up.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use tokio::sync::broadcast;

use super::AppState;

/// Minutes a slow stream may fall behind before it skips ahead.
pub const STREAM_BACKLOG_MAX: usize = 16;

/// The event stream.
pub async fn stream(state: web::Data<AppState>) -> HttpResponse {
    let Some(receiver) = state.backend.prices() else {
        return HttpResponse::NotFound().finish();
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(events(receiver))
}

/// SSE frames of what `receiver` brings, skipping what a slow reader missed.
fn events(
    receiver: broadcast::Receiver<Arc<str>>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(body) => {
                    let frame = web::Bytes::from(format!("event: prices\ndata: {body}\n\n"));
                    return Some((Ok(frame), receiver));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
