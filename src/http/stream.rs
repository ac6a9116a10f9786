//! `GET /api/stream`: live prices as server-sent events. A `PriceFeed` actor
//! subscribes to the ticker and fans each market minute out to every open
//! stream through a bounded broadcast channel (a slow page skips minutes; it
//! never holds the ticker up).

use std::sync::Arc;

use actix::{Actor, Context, Handler};
use actix_web::{HttpResponse, web};
use actors::domain::asset::Universe;
use actors::market::PricesChanged;
use tokio::sync::broadcast;

use super::AppState;

/// Minutes a slow stream may fall behind before it skips ahead.
pub const STREAM_BACKLOG_MAX: usize = 16;

/// Turns market minutes into SSE-ready JSON for every listener.
pub struct PriceFeed {
    universe: Arc<Universe>,
    sender: broadcast::Sender<Arc<str>>,
}

impl PriceFeed {
    /// A feed publishing on `sender`.
    #[must_use]
    pub fn new(universe: Arc<Universe>, sender: broadcast::Sender<Arc<str>>) -> Self {
        Self { universe, sender }
    }
}

impl Actor for PriceFeed {
    type Context = Context<Self>;
}

impl Handler<PricesChanged> for PriceFeed {
    type Result = ();

    fn handle(&mut self, changed: PricesChanged, _: &mut Context<Self>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let assets: Vec<serde_json::Value> = changed
            .quotes
            .iter()
            .filter_map(|quote| {
                let spec = self.universe.get(quote.asset)?;
                Some(serde_json::json!({
                    "ticker": spec.ticker.as_str(),
                    "name": spec.name,
                    "category": spec.category,
                    "price": format!("{:.2}", (quote.bid + quote.ask) / rust_decimal::Decimal::TWO),
                    "bid": format!("{:.2}", quote.bid),
                    "ask": format!("{:.2}", quote.ask),
                    "halted": quote.halted,
                }))
            })
            .collect();
        let body = serde_json::json!({"minute": changed.minute, "assets": assets}).to_string();
        let _ = self.sender.send(Arc::from(body.as_str()));
    }
}

/// The event stream.
pub async fn stream(state: web::Data<AppState>) -> HttpResponse {
    let Some(feed) = state.prices.as_ref() else {
        return HttpResponse::NotFound().finish();
    };
    let receiver = feed.subscribe();
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(body) => {
                    let frame = web::Bytes::from(format!("event: prices\ndata: {body}\n\n"));
                    return Some((Ok::<_, actix_web::Error>(frame), receiver));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    HttpResponse::Ok().content_type("text/event-stream").insert_header(("Cache-Control", "no-cache")).streaming(events)
}
