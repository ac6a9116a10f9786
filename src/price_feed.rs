//! `PriceFeed`: an actor subscribed to the ticker that turns each market
//! minute into the JSON of `/api/stream` and fans it out through a bounded
//! broadcast channel (a slow page skips minutes; it never holds the ticker
//! up) and, where a publish hook is set, to other instances.

use std::sync::Arc;

use actix::{Actor, Context, Handler};
use actors::domain::asset::Universe;
use actors::market::PricesChanged;
use tokio::sync::broadcast;

pub use gateway::http::stream::STREAM_BACKLOG_MAX;

/// Hands a market minute's JSON to other instances (NATS).
pub type PublishPrices = Arc<dyn Fn(Arc<str>) + Send + Sync>;

/// Turns market minutes into SSE-ready JSON for every listener.
pub struct PriceFeed {
    universe: Arc<Universe>,
    sender: broadcast::Sender<Arc<str>>,
    publish: Option<PublishPrices>,
}

impl PriceFeed {
    /// A feed publishing on `sender`.
    #[must_use]
    pub fn new(universe: Arc<Universe>, sender: broadcast::Sender<Arc<str>>) -> Self {
        Self { universe, sender, publish: None }
    }

    /// The same feed, also handing every minute to `publish`.
    #[must_use]
    pub fn publishing(mut self, publish: PublishPrices) -> Self {
        self.publish = Some(publish);
        self
    }
}

impl Actor for PriceFeed {
    type Context = Context<Self>;
}

impl Handler<PricesChanged> for PriceFeed {
    type Result = ();

    fn handle(&mut self, changed: PricesChanged, _: &mut Context<Self>) {
        if self.sender.receiver_count() == 0 && self.publish.is_none() {
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
        let body: Arc<str> = Arc::from(body.as_str());
        if let Some(publish) = &self.publish {
            publish(Arc::clone(&body));
        }
        let _ = self.sender.send(body);
    }
}
