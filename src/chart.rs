//! `/chart` pictures: buckets one-minute candles and renders a candlestick PNG with a volume panel, in memory.
//!
//! Ranges and their buckets: `1h` shows 60 one-minute candles, `1d` shows 96 fifteen-minute candles and `1w`
//! shows 84 two-hour candles, so every chart holds about the same number of bars whatever the input size.
//! Text uses DejaVu Sans embedded in the binary (drawn by `glyph_backend`), so no system fonts or fontconfig are
//! needed at runtime.

mod glyph_backend;

use ab_glyph::FontRef;
use actors::ports::Candle;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use self::glyph_backend::GlyphBackend;
pub use crate::telegram::command::ChartRange;

/// Width of a rendered chart, in pixels.
pub const WIDTH_PX: u32 = 800;
/// Height of a rendered chart, in pixels.
pub const HEIGHT_PX: u32 = 500;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Latest instant a chart can show (9999-12-31); later clocks are clamped so time arithmetic cannot overflow.
const NOW_MS_MAX: i64 = 253_402_300_799_999;
/// Largest price magnitude drawn; bars beyond it are dropped so axis arithmetic stays finite.
const PRICE_ABS_MAX: f64 = 1e12;
/// Longest company name printed in the title, in characters.
const NAME_CHARS_MAX: usize = 40;
/// Longest ticker printed in the title, in characters.
const TICKER_CHARS_MAX: usize = 12;

const FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
/// The family plotters' text styles name; `GlyphBackend` draws every family with the embedded font.
const FONT_FAMILY: &str = "sans-serif";

const BACKGROUND: RGBColor = RGBColor(255, 255, 255);
const TEXT: RGBColor = RGBColor(33, 37, 41);
const MUTED: RGBColor = RGBColor(108, 117, 125);
const GRID: RGBColor = RGBColor(233, 236, 239);
const AXIS: RGBColor = RGBColor(173, 181, 189);
const UP: RGBColor = RGBColor(38, 166, 154);
const DOWN: RGBColor = RGBColor(239, 83, 80);

/// What to draw: one instrument over one range, ending at `now_ms`.
#[derive(Debug, Clone, Copy)]
pub struct ChartSpec<'a> {
    /// Ticker symbol, shown first in the title.
    pub ticker: &'a str,
    /// Company name, shown after the ticker.
    pub name: &'a str,
    /// How far back to look and how wide each bar is.
    pub range: ChartRange,
    /// One-minute candles, oldest first; candles outside the range are ignored.
    pub candles: &'a [Candle],
    /// The right edge of the chart, ms since the epoch.
    pub now_ms: i64,
}

/// Why a chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The embedded font could not be loaded.
    #[error("the embedded chart font is invalid")]
    Font,
    /// Plotting into the pixel buffer failed.
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    /// Encoding the pixels as PNG failed.
    #[error("encoding the chart as PNG failed")]
    Encode(#[from] png::EncodingError),
}

/// How far back a range looks, in ms.
pub fn window_ms(range: ChartRange) -> i64 {
    match range {
        ChartRange::Hour => HOUR_MS,
        ChartRange::Day => DAY_MS,
        ChartRange::Week => 7 * DAY_MS,
    }
}

/// The width of one bar for a range, in ms: 1 minute for `1h`, 15 minutes for `1d`, 2 hours for `1w`.
pub fn bucket_ms(range: ChartRange) -> i64 {
    match range {
        ChartRange::Hour => MINUTE_MS,
        ChartRange::Day => 15 * MINUTE_MS,
        ChartRange::Week => 2 * HOUR_MS,
    }
}

/// Merges candles into buckets of `bucket_ms` aligned to the epoch: open of the first, close of the last, highest
/// high, lowest low, summed volume. Candles with a non-finite price are skipped; a consecutive run of candles in
/// the same bucket becomes one candle, so input should be oldest first. A `bucket_ms` below 1 is treated as 1.
pub fn aggregate(candles: &[Candle], bucket_ms: i64) -> Vec<Candle> {
    let bucket_ms = bucket_ms.max(1);
    let mut out: Vec<Candle> = Vec::new();
    for candle in candles.iter().filter_map(sanitize) {
        let start_ms = candle.start_ms.div_euclid(bucket_ms).saturating_mul(bucket_ms);
        match out.last_mut() {
            Some(last) if last.start_ms == start_ms => {
                last.high = last.high.max(candle.high);
                last.low = last.low.min(candle.low);
                last.close = candle.close;
                last.volume = last.volume.saturating_add(candle.volume);
            }
            _ => out.push(Candle { start_ms, ..candle }),
        }
    }
    out
}

/// Renders the chart as `WIDTH_PX`×`HEIGHT_PX` PNG bytes. Any input renders: with no usable candles in the range
/// the chart says "no data yet".
pub fn render_png(spec: &ChartSpec<'_>) -> Result<Vec<u8>, ChartError> {
    let font = FontRef::try_from_slice(FONT_BYTES).map_err(|_| ChartError::Font)?;
    let view = View::new(spec);
    let mut pixels = vec![0_u8; (WIDTH_PX as usize) * (HEIGHT_PX as usize) * 3];
    {
        let bitmap = BitMapBackend::with_buffer(&mut pixels, (WIDTH_PX, HEIGHT_PX));
        let root = GlyphBackend::new(bitmap, font).into_drawing_area();
        draw(&root, spec, &view).map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present().map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    encode_png(&pixels)
}

/// The bars and axis ranges derived from a spec.
struct View {
    bars: Vec<Candle>,
    bucket_ms: i64,
    x_start_ms: i64,
    x_end_ms: i64,
    price_min: f64,
    price_max: f64,
    volume_max: f64,
}

impl View {
    fn new(spec: &ChartSpec<'_>) -> Self {
        let bucket_ms = bucket_ms(spec.range);
        let now_ms = spec.now_ms.clamp(0, NOW_MS_MAX);
        let x_start_ms = floor_to(now_ms - window_ms(spec.range), bucket_ms);
        let x_end_ms = floor_to(now_ms, bucket_ms) + bucket_ms;
        let in_window: Vec<Candle> =
            spec.candles.iter().filter(|c| c.start_ms >= x_start_ms && c.start_ms <= now_ms).copied().collect();
        let bars: Vec<Candle> = aggregate(&in_window, bucket_ms)
            .into_iter()
            .filter(|c| c.low >= -PRICE_ABS_MAX && c.high <= PRICE_ABS_MAX)
            .collect();

        let (mut price_min, mut price_max) =
            bars.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| (lo.min(c.low), hi.max(c.high)));
        if !(price_min.is_finite() && price_max.is_finite()) {
            (price_min, price_max) = (0.0, 1.0);
        }
        // Pad so bars do not touch the frame, and give a flat price a visible band.
        let pad = ((price_max - price_min) * 0.08).max(price_max.abs() * 0.005).max(0.01);
        let volume_max = bars.iter().map(|c| c.volume).max().unwrap_or(0).max(1) as f64 * 1.1;
        Self {
            bars,
            bucket_ms,
            x_start_ms,
            x_end_ms,
            price_min: price_min - pad,
            price_max: price_max + pad,
            volume_max,
        }
    }

    /// Time labels: every 10 minutes for `1h`, every 3 hours for `1d`, every midnight UTC for `1w`.
    fn ticks(&self, range: ChartRange) -> Vec<i64> {
        let step_ms = match range {
            ChartRange::Hour => 10 * MINUTE_MS,
            ChartRange::Day => 3 * HOUR_MS,
            ChartRange::Week => DAY_MS,
        };
        let first = floor_to(self.x_start_ms, step_ms) + step_ms;
        (0..).map(|i| first + i * step_ms).take_while(|t| *t < self.x_end_ms).collect()
    }
}

fn draw<DB>(
    root: &DrawingArea<DB, Shift>,
    spec: &ChartSpec<'_>,
    view: &View,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
{
    root.fill(&BACKGROUND)?;
    let (header, body) = root.split_vertically(44);
    draw_header(&header, spec, view)?;
    let (price_area, volume_area) = body.split_vertically(body.dim_in_pixel().1 * 72 / 100);

    let label_style = TextStyle::from((FONT_FAMILY, 12).into_font()).color(&MUTED);
    let ticks = view.ticks(spec.range);
    let range = spec.range;
    let time_label = move |ms: &i64| format_time(*ms, range);
    let plot_height_px = f64::from(price_area.dim_in_pixel().1.max(1));
    // Price labels that the last-price tag would cover are left out.
    let tag_clearance = (view.price_max - view.price_min) * 14.0 / plot_height_px;
    let last_close = view.bars.last().map(|c| c.close);
    let price_label = move |v: &f64| match last_close {
        Some(close) if (v - close).abs() < tag_clearance => String::new(),
        _ => format!("{v:.2}"),
    };
    let volume_label = |v: &f64| format_volume(*v);

    let mut price = ChartBuilder::on(&price_area)
        .margin_left(12)
        .margin_right(4)
        .margin_top(4)
        .right_y_label_area_size(72)
        .build_cartesian_2d(
            (view.x_start_ms..view.x_end_ms).with_key_points(ticks.clone()),
            view.price_min..view.price_max,
        )?;
    let mut mesh = price.configure_mesh();
    mesh.bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .label_style(label_style.clone())
        .x_label_formatter(&time_label)
        .y_label_formatter(&price_label)
        .y_labels(6);
    if view.bars.is_empty() {
        mesh.y_labels(0);
    }
    mesh.draw()?;

    let plot_width_px = f64::from(price.plotting_area().dim_in_pixel().0);
    let bars_max = ((view.x_end_ms - view.x_start_ms) / view.bucket_ms).max(1) as f64;
    let candle_width_px = (plot_width_px / bars_max * 0.7).clamp(1.0, 40.0) as u32;
    let half_bucket_ms = view.bucket_ms / 2;
    price.draw_series(view.bars.iter().map(|c| {
        CandleStick::new(
            c.start_ms + half_bucket_ms,
            c.open,
            c.high,
            c.low,
            c.close,
            UP.filled(),
            DOWN.filled(),
            candle_width_px,
        )
    }))?;
    if let (Some(first), Some(last)) = (view.bars.first(), view.bars.last()) {
        // The last price as a dashed-looking faint line across the chart and a tag on the price axis.
        let color = if last.close >= first.open { UP } else { DOWN };
        price.draw_series(std::iter::once(PathElement::new(
            vec![(view.x_start_ms, last.close), (view.x_end_ms, last.close)],
            color.mix(0.6).stroke_width(1),
        )))?;
        let (axis_x, tag_y) = price.backend_coord(&(view.x_end_ms, last.close));
        let tag_style =
            TextStyle::from((FONT_FAMILY, 12).into_font()).color(&BACKGROUND).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Rectangle::new([(axis_x + 1, tag_y - 9), (axis_x + 70, tag_y + 9)], color.filled()))?;
        root.draw_text(&format!("{:.2}", last.close), &tag_style, (axis_x + 7, tag_y))?;
    }

    let mut volume = ChartBuilder::on(&volume_area)
        .margin_left(12)
        .margin_right(4)
        .margin_top(6)
        .margin_bottom(4)
        .x_label_area_size(26)
        .right_y_label_area_size(72)
        .build_cartesian_2d((view.x_start_ms..view.x_end_ms).with_key_points(ticks), 0.0..view.volume_max)?;
    volume
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .label_style(label_style)
        .x_label_formatter(&time_label)
        .y_label_formatter(&volume_label)
        .y_labels(if view.bars.iter().any(|c| c.volume > 0) { 3 } else { 0 })
        .draw()?;
    let inset_ms = view.bucket_ms * 15 / 100;
    volume.draw_series(view.bars.iter().map(|c| {
        let color = if c.close > c.open { UP } else { DOWN };
        Rectangle::new(
            [(c.start_ms + inset_ms, 0.0), (c.start_ms + view.bucket_ms - inset_ms, c.volume as f64)],
            color.mix(0.6).filled(),
        )
    }))?;

    let (w, h) = root.dim_in_pixel();
    let corner_style =
        TextStyle::from((FONT_FAMILY, 11).into_font()).color(&MUTED).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text("UTC", &corner_style, (w as i32 - 38, h as i32 - 17))?;

    if view.bars.is_empty() {
        let (w, h) = price_area.dim_in_pixel();
        let note =
            TextStyle::from((FONT_FAMILY, 22).into_font()).color(&MUTED).pos(Pos::new(HPos::Center, VPos::Center));
        price_area.draw_text("no data yet", &note, ((w as i32 - 72) / 2, h as i32 / 2))?;
    }
    Ok(())
}

/// Title on the left ("TICKER — Name · 1d"), last price and change over the range on the right.
fn draw_header<DB>(
    area: &DrawingArea<DB, Shift>,
    spec: &ChartSpec<'_>,
    view: &View,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
{
    let (w, h) = area.dim_in_pixel();
    let y = h as i32 / 2 + 4;
    let ticker: String = spec.ticker.chars().filter(|c| !c.is_control()).take(TICKER_CHARS_MAX).collect();
    let mut name: String = spec.name.chars().filter(|c| !c.is_control()).take(NAME_CHARS_MAX).collect();
    if spec.name.chars().filter(|c| !c.is_control()).nth(NAME_CHARS_MAX).is_some() {
        name.push('…');
    }
    let title = format!("{ticker} — {name} · {}", range_label(spec.range));
    let title_style =
        TextStyle::from((FONT_FAMILY, 20).into_font()).color(&TEXT).pos(Pos::new(HPos::Left, VPos::Center));
    area.draw_text(&title, &title_style, (14, y))?;

    if let (Some(first), Some(last)) = (view.bars.first(), view.bars.last()) {
        let change_pct = if first.open.abs() > f64::EPSILON { (last.close / first.open - 1.0) * 100.0 } else { 0.0 };
        let color = if change_pct >= 0.0 { UP } else { DOWN };
        let text = format!("{:.2}  {change_pct:+.2}%", last.close);
        let style =
            TextStyle::from((FONT_FAMILY, 18).into_font()).color(&color).pos(Pos::new(HPos::Right, VPos::Center));
        area.draw_text(&text, &style, (w as i32 - 14, y))?;
    }
    Ok(())
}

fn encode_png(pixels: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH_PX, HEIGHT_PX);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Charts are mostly flat colour: the slower settings shrink them several times over, still in milliseconds.
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}

/// A candle with finite prices and `low <= open, close <= high`, or `None` if any price is NaN or infinite.
fn sanitize(c: &Candle) -> Option<Candle> {
    let prices = [c.open, c.high, c.low, c.close];
    if !prices.iter().all(|p| p.is_finite()) {
        return None;
    }
    let high = prices.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let low = prices.iter().copied().fold(f64::INFINITY, f64::min);
    Some(Candle { high, low, ..*c })
}

fn floor_to(ms: i64, step_ms: i64) -> i64 {
    ms.div_euclid(step_ms) * step_ms
}

fn range_label(range: ChartRange) -> &'static str {
    match range {
        ChartRange::Hour => "1h",
        ChartRange::Day => "1d",
        ChartRange::Week => "1w",
    }
}

/// `HH:MM` in UTC for the hour and day ranges, `Mon D` (e.g. `Mar 5`) for the week.
fn format_time(ms: i64, range: ChartRange) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    match range {
        ChartRange::Hour | ChartRange::Day => format!("{:02}:{:02}", secs_of_day / 3600, secs_of_day % 3600 / 60),
        ChartRange::Week => {
            let (_, month, day) = civil_from_days(days);
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let month = usize::try_from(month - 1).ok().and_then(|i| MONTHS.get(i)).copied().unwrap_or("?");
            format!("{month} {day}")
        }
    }
}

/// Volume with a k/M/B suffix and one decimal below ten: `950`, `1.5k`, `12k`, `4.5M`; small fractions (axis
/// steps between whole shares) keep one decimal.
fn format_volume(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "B"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    if scaled.abs() < 10.0 && (!suffix.is_empty() || scaled.fract() != 0.0) {
        format!("{scaled:.1}{suffix}")
    } else {
        format!("{scaled:.0}{suffix}")
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (proleptic Gregorian, H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_787), (2024, 3, 5));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn time_labels() {
        let ms = 19_787 * DAY_MS + 13 * HOUR_MS + 7 * MINUTE_MS;
        assert_eq!(format_time(ms, ChartRange::Hour), "13:07");
        assert_eq!(format_time(ms, ChartRange::Week), "Mar 5");
    }

    #[test]
    fn volume_labels() {
        assert_eq!(format_volume(950.0), "950");
        assert_eq!(format_volume(2.5), "2.5");
        assert_eq!(format_volume(2.0), "2");
        assert_eq!(format_volume(1_500.0), "1.5k");
        assert_eq!(format_volume(12_300.0), "12k");
        assert_eq!(format_volume(4_500_000.0), "4.5M");
    }
}
