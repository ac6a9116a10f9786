//! Chart rendering: PNG output decodes at the right size for any input, and bucketing keeps OHLCV right.
#![allow(clippy::expect_used)]

use actors::ports::Candle;
use stockbot::chart::{self, ChartRange, ChartSpec, HEIGHT_PX, WIDTH_PX};

const MINUTE_MS: i64 = 60_000;
/// 2024-03-05 12:00 UTC.
const NOW_MS: i64 = 1_709_640_000_000;
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn candle(start_ms: i64, open: f64, high: f64, low: f64, close: f64, volume: u64) -> Candle {
    Candle { start_ms, open, high, low, close, volume }
}

/// A deterministic random walk of `n` one-minute candles ending at `NOW_MS`.
fn walk(n: usize) -> Vec<Candle> {
    let mut price = 100.0_f64;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0 - 0.5
    };
    let first_ms = NOW_MS - (n as i64 - 1) * MINUTE_MS;
    (0..n)
        .map(|i| {
            let open = price;
            let close = (open * (1.0 + next() * 0.01)).max(0.01);
            let high = open.max(close) * (1.0 + next().abs() * 0.004);
            let low = open.min(close) * (1.0 - next().abs() * 0.004);
            price = close;
            let volume = (next().abs() * 5_000.0) as u64;
            candle(first_ms + i as i64 * MINUTE_MS, open, high, low, close, volume)
        })
        .collect()
}

fn render(range: ChartRange, candles: &[Candle]) -> Vec<u8> {
    let spec = ChartSpec { ticker: "ACME", name: "Acme Corporation", range, candles, now_ms: NOW_MS };
    chart::render_png(&spec).expect("chart renders")
}

/// Checks the signature, decodes the PNG and returns its (width, height).
fn decoded_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(&PNG_SIGNATURE), "not a PNG");
    let mut reader = png::Decoder::new(bytes).read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("PNG data");
    (info.width, info.height)
}

#[test]
fn renders_a_decodable_png_for_every_range() {
    let candles = walk(7 * 24 * 60);
    for range in [ChartRange::Hour, ChartRange::Day, ChartRange::Week] {
        let bytes = render(range, &candles);
        assert_eq!(decoded_size(&bytes), (WIDTH_PX, HEIGHT_PX), "{range:?}");
        if let Ok(dir) = std::env::var("CHART_SAMPLE_DIR") {
            std::fs::write(format!("{dir}/chart-{range:?}.png"), &bytes).expect("write sample");
        }
    }
}

#[test]
fn aggregate_merges_ohlcv() {
    let bucket_ms = 15 * MINUTE_MS;
    let base = NOW_MS; // a multiple of 15 minutes
    let input = [
        candle(base, 10.0, 11.0, 9.5, 10.5, 100),
        candle(base + MINUTE_MS, 10.5, 12.5, 10.0, 12.0, 50),
        candle(base + 2 * MINUTE_MS, 12.0, 12.0, 8.0, 9.0, 25),
        candle(base + bucket_ms, 9.0, 9.5, 8.5, 9.25, 7),
    ];
    let out = chart::aggregate(&input, bucket_ms);
    assert_eq!(out, vec![candle(base, 10.0, 12.5, 8.0, 9.0, 175), candle(base + bucket_ms, 9.0, 9.5, 8.5, 9.25, 7)]);
}

#[test]
fn aggregate_aligns_buckets_and_skips_non_finite_prices() {
    let bucket_ms = 2 * 60 * MINUTE_MS;
    let base = NOW_MS; // a multiple of 2 hours
    let input = [
        candle(base + 5 * MINUTE_MS, 1.0, 2.0, 0.5, 1.5, 3),
        candle(base + 6 * MINUTE_MS, f64::NAN, 2.0, 0.5, 1.5, 1_000),
        candle(base + 7 * MINUTE_MS, 1.5, f64::INFINITY, 0.5, 1.5, 1_000),
        candle(base + 8 * MINUTE_MS, 1.5, 1.6, 1.4, 1.45, u64::MAX),
    ];
    let out = chart::aggregate(&input, bucket_ms);
    assert_eq!(out, vec![candle(base, 1.0, 2.0, 0.5, 1.45, u64::MAX)]);
    assert!(chart::aggregate(&[], bucket_ms).is_empty());
    assert_eq!(chart::aggregate(&input, 0).len(), 2, "a zero bucket is one millisecond");
}

#[test]
fn windows_grow_with_the_range() {
    assert_eq!(chart::window_ms(ChartRange::Hour), 60 * MINUTE_MS);
    assert_eq!(chart::window_ms(ChartRange::Day), 24 * 60 * MINUTE_MS);
    assert_eq!(chart::window_ms(ChartRange::Week), 7 * 24 * 60 * MINUTE_MS);
}

#[test]
fn empty_single_and_degenerate_inputs_render() {
    let flat = candle(NOW_MS - MINUTE_MS, 5.0, 5.0, 5.0, 5.0, 0);
    let zero = candle(NOW_MS - MINUTE_MS, 0.0, 0.0, 0.0, 0.0, 0);
    let nan = candle(NOW_MS - MINUTE_MS, f64::NAN, f64::NAN, f64::NAN, f64::NAN, 10);
    let inf = candle(NOW_MS - 2 * MINUTE_MS, f64::INFINITY, f64::NEG_INFINITY, 1.0, 1.0, 10);
    let huge = candle(NOW_MS - MINUTE_MS, 1e300, f64::MAX, -f64::MAX, -1e300, u64::MAX);
    let inverted = candle(NOW_MS - MINUTE_MS, 10.0, 1.0, 20.0, 5.0, 10);
    let far_future = candle(i64::MAX, 1.0, 1.0, 1.0, 1.0, 1);
    let cases: [&[Candle]; 8] = [&[], &[flat], &[zero], &[nan], &[nan, inf], &[huge], &[inverted], &[far_future, flat]];
    for (i, candles) in cases.into_iter().enumerate() {
        for range in [ChartRange::Hour, ChartRange::Day, ChartRange::Week] {
            let bytes = render(range, candles);
            assert_eq!(decoded_size(&bytes), (WIDTH_PX, HEIGHT_PX), "{range:?} {candles:?}");
            if let Ok(dir) = std::env::var("CHART_SAMPLE_DIR") {
                std::fs::write(format!("{dir}/degenerate-{i}-{range:?}.png"), &bytes).expect("write sample");
            }
        }
    }
}

#[test]
fn extreme_clocks_and_text_render() {
    let candles = walk(90);
    for now_ms in [i64::MIN, -1, 0, i64::MAX] {
        let spec = ChartSpec { ticker: "", name: "", range: ChartRange::Day, candles: &candles, now_ms };
        assert!(chart::render_png(&spec).expect("renders").starts_with(&PNG_SIGNATURE));
    }
    let name = "Ünïcödé 株式会社 🚀 ".repeat(20);
    let spec = ChartSpec { ticker: "<b>&", name: &name, range: ChartRange::Hour, candles: &candles, now_ms: NOW_MS };
    assert_eq!(decoded_size(&chart::render_png(&spec).expect("renders")), (WIDTH_PX, HEIGHT_PX));
}

#[test]
fn ten_thousand_candles_render() {
    let candles = walk(10_000);
    for range in [ChartRange::Hour, ChartRange::Day, ChartRange::Week] {
        assert_eq!(decoded_size(&render(range, &candles)), (WIDTH_PX, HEIGHT_PX));
    }
}
