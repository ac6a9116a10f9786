//! News and events as players read them: headlines for the price model's news
//! jumps, for circuit-breaker and operator halts and for operator news, worded
//! from a fixed phrase table picked from the minute and the subject (so a
//! replay reads the same), and the bounded log of recent headlines.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::asset::Universe;
use super::ids::AssetId;
use super::price_model::{INJECTED_LOG_JUMP_MAX, InjectError, News, NewsKind, PendingNews, mix_seed};

/// Headlines the engine keeps in memory.
pub const HEADLINES_KEPT: usize = 50;
/// Longest operator headline, in characters.
pub const HEADLINE_TEXT_CHARS_MAX: usize = 200;

/// What operator news is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NewsTarget {
    /// One asset.
    Asset(AssetId),
    /// A whole category, by its index in the universe; each asset moves by
    /// its loading on the category.
    Category(usize),
}

impl NewsTarget {
    /// Parses a ticker or a category name (either case) of `universe`;
    /// tickers win over category names.
    ///
    /// # Errors
    /// `UnknownTarget` when it names neither.
    pub fn parse(universe: &Universe, text: &str) -> Result<Self, NewsError> {
        let wanted = text.trim();
        let ticker = universe.assets().iter().position(|spec| spec.ticker.as_str().eq_ignore_ascii_case(wanted));
        if let Some(index) = ticker.and_then(|index| u16::try_from(index).ok()) {
            return Ok(Self::Asset(AssetId(index)));
        }
        universe
            .categories()
            .iter()
            .position(|spec| spec.name.eq_ignore_ascii_case(wanted))
            .map(Self::Category)
            .ok_or_else(|| NewsError::UnknownTarget(wanted.chars().take(32).collect()))
    }
}

/// Why operator news was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NewsError {
    #[error("no asset or category called {0:?}")]
    UnknownTarget(String),
    #[error("news jump {log_jump} is out of bounds: it must be a number within ±{INJECTED_LOG_JUMP_MAX}")]
    OutOfBounds { log_jump: f64 },
    #[error("the headline is longer than {HEADLINE_TEXT_CHARS_MAX} characters")]
    TextTooLong,
    #[error("too many news items are already waiting for it; one lands per market minute")]
    QueueFull,
    #[error("the engine has stopped")]
    Unavailable,
}

impl From<InjectError> for NewsError {
    fn from(error: InjectError) -> Self {
        match error {
            InjectError::OutOfBounds { log_jump } => Self::OutOfBounds { log_jump },
            InjectError::QueueFull => Self::QueueFull,
        }
    }
}

/// Checks operator news before it goes to the model: the jump is finite and
/// within ±[`INJECTED_LOG_JUMP_MAX`], the text at most
/// [`HEADLINE_TEXT_CHARS_MAX`] characters (trimmed; blank means none).
///
/// # Errors
/// `OutOfBounds` or `TextTooLong`.
pub fn pending_news(log_jump: f64, text: Option<String>) -> Result<PendingNews, NewsError> {
    if !log_jump.is_finite() || log_jump.abs() > INJECTED_LOG_JUMP_MAX {
        return Err(NewsError::OutOfBounds { log_jump });
    }
    let text = text.map(|text| text.trim().to_owned()).filter(|text| !text.is_empty());
    if text.as_ref().is_some_and(|text| text.chars().count() > HEADLINE_TEXT_CHARS_MAX) {
        return Err(NewsError::TextTooLong);
    }
    Ok(PendingNews { log_jump, text })
}

/// What a headline reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HeadlineKind {
    /// Unscheduled news about an asset.
    AssetNews,
    /// An asset's earnings.
    Earnings,
    /// News about a whole category.
    CategoryNews,
    /// News about the whole market.
    MarketNews,
    /// News an operator injected (about an asset or a category).
    OperatorNews,
    /// The circuit breaker halted an asset.
    BreakerHalt,
    /// An asset reopened after a circuit-breaker halt.
    BreakerResume,
    /// An operator halted an asset.
    OperatorHalt,
    /// An operator resumed an asset.
    OperatorResume,
}

impl HeadlineKind {
    fn code(self) -> u64 {
        match self {
            Self::AssetNews => 1,
            Self::Earnings => 2,
            Self::CategoryNews => 3,
            Self::OperatorNews => 4,
            Self::BreakerHalt => 5,
            Self::BreakerResume => 6,
            Self::OperatorHalt => 7,
            Self::OperatorResume => 8,
            Self::MarketNews => 9,
        }
    }
}

/// One item of the news feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// Clock time when the engine reported it.
    pub at_ms: i64,
    /// The market minute it happened in.
    pub minute: u64,
    /// The asset, for asset news and halts.
    pub ticker: Option<String>,
    /// The category: the asset's for asset news and halts, else the one the
    /// news is about.
    pub category: Option<String>,
    pub kind: HeadlineKind,
    /// The news jump as a signed percentage move (`exp(log_jump) − 1`); 0
    /// for halts and resumptions.
    pub move_pct: f64,
    pub text: String,
}

/// Wording of headlines: `{s}` is the subject (ticker, or category name),
/// `{p}` the size of the move in percent with one decimal.
const EARNINGS_UP: [&str; 4] = [
    "{s} soars {p}% on surprise earnings",
    "{s} jumps {p}% on an earnings beat",
    "{s} climbs {p}% after strong quarterly results",
    "{s} rallies {p}% as profits top forecasts",
];
const EARNINGS_DOWN: [&str; 4] = [
    "{s} drops {p}% on an earnings miss",
    "{s} sinks {p}% after weak quarterly results",
    "{s} slides {p}% as profits disappoint",
    "{s} falls {p}% on a cut outlook",
];
const ASSET_UP: [&str; 4] = [
    "{s} surges {p}% on takeover rumours",
    "{s} gains {p}% after an analyst upgrade",
    "{s} jumps {p}% on a major new contract",
    "{s} rises {p}% on product news",
];
const ASSET_DOWN: [&str; 4] = [
    "{s} tumbles {p}% on a regulatory probe",
    "{s} falls {p}% after an analyst downgrade",
    "{s} slides {p}% on a product recall",
    "{s} drops {p}% as a key executive quits",
];
const CATEGORY_UP: [&str; 4] = [
    "{s} sector rallies {p}% on upbeat industry data",
    "{s} sector climbs {p}% on strong demand",
    "{s} sector jumps {p}% on policy support",
    "{s} sector rises {p}% on supply news",
];
const CATEGORY_DOWN: [&str; 4] = [
    "{s} sector slides {p}% on supply news",
    "{s} sector drops {p}% on weak demand",
    "{s} sector falls {p}% on new regulation",
    "{s} sector sinks {p}% on industry worries",
];
const MARKET_UP: [&str; 4] = [
    "Stocks rally {p}% as markets cheer upbeat data",
    "Markets climb {p}% on a surprise rate cut",
    "Broad rally lifts stocks {p}%",
    "Stocks jump {p}% on trade deal hopes",
];
const MARKET_DOWN: [&str; 4] = [
    "Stocks tumble {p}% in a market-wide selloff",
    "Markets slide {p}% on recession fears",
    "Broad selloff sinks stocks {p}%",
    "Stocks drop {p}% as panic spreads",
];
const OPERATOR_UP: [&str; 2] = ["{s} jumps {p}% on breaking news", "{s} surges {p}% on breaking news"];
const OPERATOR_DOWN: [&str; 2] = ["{s} drops {p}% on breaking news", "{s} plunges {p}% on breaking news"];
const BREAKER_HALT: [&str; 3] =
    ["{s} halted: circuit breaker", "{s} halted: circuit breaker after a sharp move", "Circuit breaker halts {s}"];
const BREAKER_RESUME: [&str; 3] = [
    "{s} resumes trading after circuit-breaker halt",
    "{s} reopens after circuit-breaker halt",
    "Trading in {s} resumes",
];
const OPERATOR_HALT: [&str; 2] = ["{s} halted by the exchange", "Exchange suspends trading in {s}"];
const OPERATOR_RESUME: [&str; 2] = ["{s} trading resumed by the exchange", "Exchange resumes trading in {s}"];

/// Picks a phrase from `table` by the minute, subject and kind, and fills it in.
fn word(table: &[&str], minute: u64, subject_key: u64, kind: HeadlineKind, subject: &str, move_pct: f64) -> String {
    let key = mix_seed(minute, subject_key.wrapping_mul(16).wrapping_add(kind.code()));
    let len = u64::try_from(table.len()).unwrap_or(1).max(1);
    let index = usize::try_from(key % len).unwrap_or(0);
    let phrase = table.get(index).or(table.first()).copied().unwrap_or("{s}");
    phrase.replace("{s}", subject).replace("{p}", &format!("{:.1}", move_pct.abs()))
}

/// The signed percentage move of a log jump.
#[must_use]
pub fn move_pct(log_jump: f64) -> f64 {
    log_jump.exp_m1() * 100.0
}

/// Writes headlines for one market: knows the tickers and category names.
#[derive(Debug, Clone)]
pub struct Newsroom {
    tickers: Vec<String>,
    asset_category: Vec<usize>,
    categories: Vec<String>,
}

/// What one category's factor reported in a minute, as the newsroom needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CategoryMinute<'a> {
    /// The factor's own news this minute.
    pub news: Option<News>,
    /// Operator news about the category that landed this minute, with its text.
    pub injected: Option<(News, Option<&'a str>)>,
}

/// What one asset's model reported in a minute, as the newsroom needs it.
#[derive(Debug, Clone, Copy)]
pub struct AssetMinute<'a> {
    pub asset: AssetId,
    pub minute: u64,
    /// The model's own news this minute (category and market news are
    /// reported once, by the category or the market).
    pub news: Option<News>,
    /// Operator news about the asset that landed this minute, with its text.
    pub injected: Option<(News, Option<&'a str>)>,
    /// `Some(true)`: the breaker tripped; `Some(false)`: the asset reopened.
    pub breaker: Option<bool>,
}

impl Newsroom {
    /// A newsroom for `universe`.
    #[must_use]
    pub fn new(universe: &Universe) -> Self {
        Self {
            tickers: universe.assets().iter().map(|spec| spec.ticker.as_str().to_owned()).collect(),
            asset_category: universe.asset_categories().to_vec(),
            categories: universe.categories().iter().map(|spec| spec.name.clone()).collect(),
        }
    }

    fn asset_names(&self, asset: AssetId) -> Option<(&str, Option<String>)> {
        let ticker = self.tickers.get(asset.index())?;
        let category = self.asset_category.get(asset.index()).and_then(|c| self.categories.get(*c)).cloned();
        Some((ticker.as_str(), category))
    }

    /// The headline of news that hit an asset (`text`: an operator's own
    /// wording); `None` for an unknown asset.
    #[must_use]
    pub fn asset_news(
        &self,
        asset: AssetId,
        minute: u64,
        at_ms: i64,
        news: News,
        text: Option<&str>,
    ) -> Option<Headline> {
        let (ticker, category) = self.asset_names(asset)?;
        let up = news.log_jump >= 0.0;
        let (kind, table): (HeadlineKind, &[&str]) = match (news.kind, up) {
            (NewsKind::Scheduled, true) => (HeadlineKind::Earnings, &EARNINGS_UP),
            (NewsKind::Scheduled, false) => (HeadlineKind::Earnings, &EARNINGS_DOWN),
            (NewsKind::Operator, true) => (HeadlineKind::OperatorNews, &OPERATOR_UP),
            (NewsKind::Operator, false) => (HeadlineKind::OperatorNews, &OPERATOR_DOWN),
            (NewsKind::Asset | NewsKind::Category | NewsKind::Market, true) => (HeadlineKind::AssetNews, &ASSET_UP),
            (NewsKind::Asset | NewsKind::Category | NewsKind::Market, false) => (HeadlineKind::AssetNews, &ASSET_DOWN),
        };
        let pct = move_pct(news.log_jump);
        let text = match text {
            Some(text) => text.to_owned(),
            None => word(table, minute, asset.index() as u64, kind, ticker, pct),
        };
        Some(Headline { at_ms, minute, ticker: Some(ticker.to_owned()), category, kind, move_pct: pct, text })
    }

    /// The headline of news that hit a whole category; `None` for an
    /// unknown category.
    #[must_use]
    pub fn category_news(
        &self,
        category: usize,
        minute: u64,
        at_ms: i64,
        news: News,
        text: Option<&str>,
    ) -> Option<Headline> {
        let name = self.categories.get(category)?;
        let up = news.log_jump >= 0.0;
        let (kind, table): (HeadlineKind, &[&str]) = match (news.kind, up) {
            (NewsKind::Operator, true) => (HeadlineKind::OperatorNews, &OPERATOR_UP),
            (NewsKind::Operator, false) => (HeadlineKind::OperatorNews, &OPERATOR_DOWN),
            (_, true) => (HeadlineKind::CategoryNews, &CATEGORY_UP),
            (_, false) => (HeadlineKind::CategoryNews, &CATEGORY_DOWN),
        };
        let pct = move_pct(news.log_jump);
        // Category keys sit apart from asset keys so their wording varies
        // independently.
        let key = 0x10_000 + category as u64;
        let text = match (text, kind) {
            (Some(text), _) => text.to_owned(),
            (None, HeadlineKind::OperatorNews) => word(table, minute, key, kind, &format!("{name} sector"), pct),
            (None, _) => word(table, minute, key, kind, name, pct),
        };
        Some(Headline { at_ms, minute, ticker: None, category: Some(name.clone()), kind, move_pct: pct, text })
    }

    /// The headline of news that hit the whole market (each asset moves by
    /// its loading on the market factor).
    #[must_use]
    pub fn market_news(&self, minute: u64, at_ms: i64, news: News) -> Headline {
        let table: &[&str] = if news.log_jump >= 0.0 { &MARKET_UP } else { &MARKET_DOWN };
        let pct = move_pct(news.log_jump);
        // The market's key sits apart from the categories' and the assets'.
        let text = word(table, minute, 0x20_000, HeadlineKind::MarketNews, "", pct);
        Headline { at_ms, minute, ticker: None, category: None, kind: HeadlineKind::MarketNews, move_pct: pct, text }
    }

    /// The headline of a halt or a resumption of an asset, by the circuit
    /// breaker (`breaker`) or an operator; `None` for an unknown asset.
    #[must_use]
    pub fn halt(&self, asset: AssetId, minute: u64, at_ms: i64, halted: bool, breaker: bool) -> Option<Headline> {
        let (ticker, category) = self.asset_names(asset)?;
        let (kind, table): (HeadlineKind, &[&str]) = match (breaker, halted) {
            (true, true) => (HeadlineKind::BreakerHalt, &BREAKER_HALT),
            (true, false) => (HeadlineKind::BreakerResume, &BREAKER_RESUME),
            (false, true) => (HeadlineKind::OperatorHalt, &OPERATOR_HALT),
            (false, false) => (HeadlineKind::OperatorResume, &OPERATOR_RESUME),
        };
        let text = word(table, minute, asset.index() as u64, kind, ticker, 0.0);
        Some(Headline { at_ms, minute, ticker: Some(ticker.to_owned()), category, kind, move_pct: 0.0, text })
    }

    /// Every headline of one market minute, in a fixed order: market news,
    /// categories in universe order (operator news first, then drawn news),
    /// then assets in the order given (operator news, drawn news, breaker).
    #[must_use]
    pub fn minute_headlines(
        &self,
        minute: u64,
        at_ms: i64,
        market: Option<News>,
        categories: &[CategoryMinute<'_>],
        assets: &[AssetMinute<'_>],
    ) -> Vec<Headline> {
        let mut out: Vec<Headline> = market.map(|news| self.market_news(minute, at_ms, news)).into_iter().collect();
        for (index, item) in categories.iter().enumerate() {
            if let Some((news, text)) = item.injected {
                out.extend(self.category_news(index, minute, at_ms, news, text));
            }
            if let Some(news) = item.news {
                out.extend(self.category_news(index, minute, at_ms, news, None));
            }
        }
        for item in assets {
            if let Some((news, text)) = item.injected {
                out.extend(self.asset_news(item.asset, item.minute, at_ms, news, text));
            }
            if let Some(news) = item.news.filter(|news| !matches!(news.kind, NewsKind::Category | NewsKind::Market)) {
                out.extend(self.asset_news(item.asset, item.minute, at_ms, news, None));
            }
            if let Some(halted) = item.breaker {
                out.extend(self.halt(item.asset, item.minute, at_ms, halted, true));
            }
        }
        out
    }
}

/// The most recent headlines, oldest dropped first.
#[derive(Debug, Clone)]
pub struct HeadlineLog {
    capacity: usize,
    items: VecDeque<Headline>,
}

impl HeadlineLog {
    /// A log keeping at most `capacity` headlines (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, items: VecDeque::with_capacity(capacity) }
    }

    /// Adds a headline, dropping the oldest when full.
    pub fn push(&mut self, headline: Headline) {
        while self.items.len() >= self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(headline);
    }

    /// Up to `limit` headlines, newest first.
    #[must_use]
    pub fn latest(&self, limit: usize) -> Vec<Headline> {
        self.items.iter().rev().take(limit).cloned().collect()
    }

    /// How many headlines are kept now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no headline is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::domain::asset::{AssetSpec, CategorySpec, ModelParams};

    fn headline(minute: u64) -> Headline {
        Headline {
            at_ms: 0,
            minute,
            ticker: None,
            category: None,
            kind: HeadlineKind::AssetNews,
            move_pct: 0.0,
            text: String::new(),
        }
    }

    #[test]
    fn the_log_keeps_the_newest_within_its_capacity() {
        let mut log = HeadlineLog::new(3);
        for minute in 0..10 {
            log.push(headline(minute));
            assert!(log.len() <= 3);
        }
        let minutes: Vec<u64> = log.latest(10).iter().map(|h| h.minute).collect();
        assert_eq!(minutes, vec![9, 8, 7]);
        assert_eq!(log.latest(1).len(), 1);
    }

    #[test]
    fn wording_is_deterministic_and_signed() {
        let up = word(&EARNINGS_UP, 42, 3, HeadlineKind::Earnings, "QBIT", 6.24);
        assert_eq!(up, word(&EARNINGS_UP, 42, 3, HeadlineKind::Earnings, "QBIT", 6.24));
        assert!(up.starts_with("QBIT ") && up.contains("6.2%"), "{up}");
        let down = word(&CATEGORY_DOWN, 42, 3, HeadlineKind::CategoryNews, "Energy", -3.1);
        assert!(down.starts_with("Energy sector ") && down.contains("3.1%"), "{down}");
        assert!((move_pct(0.06) - 6.183_654_654_535_962).abs() < 1e-9);
        assert!(move_pct(-0.03) < 0.0);
    }

    #[test]
    fn market_news_is_one_headline_before_the_categories() {
        let categories =
            vec![CategorySpec { name: "Tech".into(), vol_daily: 0.01, jump_rate_daily: 0.1, jump_sigma: 0.01 }];
        let assets = vec![AssetSpec {
            ticker: crate::domain::ids::Ticker::parse("ACME").unwrap(),
            name: "Acme".into(),
            category: "Tech".into(),
            initial_price: rust_decimal::Decimal::from(50),
            model: ModelParams::default(),
        }];
        let newsroom = Newsroom::new(&Universe::new(categories, assets).unwrap());
        let crash = News { kind: NewsKind::Market, log_jump: -0.05 };
        let category = CategoryMinute { news: Some(News { kind: NewsKind::Category, log_jump: 0.02 }), injected: None };
        // The asset reports the market's news as its own; it is not repeated.
        let asset = AssetMinute { asset: AssetId(0), minute: 3, news: Some(crash), injected: None, breaker: None };
        let headlines = newsroom.minute_headlines(3, 0, Some(crash), &[category], &[asset]);
        let kinds: Vec<HeadlineKind> = headlines.iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [HeadlineKind::MarketNews, HeadlineKind::CategoryNews]);
        assert!(headlines[0].text.contains("4.9%") && headlines[0].move_pct < 0.0, "{:?}", headlines[0]);
    }

    #[test]
    fn operator_news_is_checked() {
        assert!(matches!(pending_news(0.51, None), Err(NewsError::OutOfBounds { .. })));
        assert!(matches!(pending_news(f64::NAN, None), Err(NewsError::OutOfBounds { .. })));
        assert!(matches!(pending_news(0.1, Some("x".repeat(201))), Err(NewsError::TextTooLong)));
        assert_eq!(pending_news(-0.5, Some("  ".into())).unwrap().text, None);
        assert_eq!(pending_news(0.2, Some(" Hi ".into())).unwrap().text.as_deref(), Some("Hi"));
    }
}
