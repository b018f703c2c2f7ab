//! A hand-written SVG plot: one panel per policy with demand, ready, idle and booting over time.

use std::fmt::Write;

use super::report::Report;
use super::world::Sample;

const W: f64 = 1000.0;
const PANEL_H: f64 = 200.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
/// A panel and the gap below it.
const PANEL_STEP: f64 = PANEL_H + 45.0;

/// Series drawn, with their colours.
const SERIES: [(&str, &str); 4] = [
    ("demand (calls + min)", "#222222"),
    ("ready", "#1f77b4"),
    ("idle", "#2ca02c"),
    ("booting", "#ff7f0e"),
];

fn value(s: &Sample, i: usize) -> u32 {
    match i {
        0 => s.demand,
        1 => s.ready,
        2 => s.idle,
        _ => s.booting,
    }
}

/// A "nice" tick step (1, 2, 5 x 10^k) giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Renders the report's samples as an SVG document (all panels share the y scale).
pub fn svg(report: &Report) -> String {
    let n = report.policies.len().max(1) as f64;
    let height = TOP + n * PANEL_STEP;
    let hours = report.hours.max(1e-6);
    let y_max = report
        .policies
        .iter()
        .flat_map(|p| p.samples.iter())
        .flat_map(|s| (0..4).map(move |i| value(s, i)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let x_of = |t_ms: u64| LEFT + plot_w * (t_ms as f64 / 3_600_000.0) / hours;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="18" font-size="14">{} ({} calls, {:.1} h, seed {})</text>"#,
        escape(&report.trace),
        report.calls,
        report.hours,
        report.seed
    );
    // Legend.
    let mut lx = LEFT;
    for (name, colour) in SERIES {
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="30" x2="{}" y2="30" stroke="{colour}" stroke-width="2"/><text x="{}" y="34">{name}</text>"#,
            lx + 20.0,
            lx + 24.0
        );
        lx += 34.0 + 7.0 * name.len() as f64;
    }
    let x_step = nice_step(hours, 12.0);
    let y_step = nice_step(y_max, 5.0);
    for (k, p) in report.policies.iter().enumerate() {
        let top = TOP + k as f64 * PANEL_STEP + 20.0;
        let bottom = top + PANEL_H;
        let y_of = |v: u32| bottom - PANEL_H * f64::from(v) / y_max;
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            top - 6.0,
            escape(&p.policy)
        );
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#999"/>"##
        );
        for y in (0..)
            .map(|k| f64::from(k) * y_step)
            .take_while(|y| *y <= y_max + 1e-9)
        {
            let py = bottom - PANEL_H * y / y_max;
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 4.0,
                py + 4.0,
                num(y)
            );
        }
        for x in (0..)
            .map(|k| f64::from(k) * x_step)
            .take_while(|x| *x <= hours + 1e-9)
        {
            let px = LEFT + plot_w * x / hours;
            let _ = writeln!(
                o,
                r##"<line x1="{px:.1}" y1="{bottom}" x2="{px:.1}" y2="{}" stroke="#999"/><text x="{px:.1}" y="{}" text-anchor="middle">{}h</text>"##,
                bottom + 4.0,
                bottom + 15.0,
                num(x)
            );
        }
        for (i, (_, colour)) in SERIES.iter().enumerate() {
            let mut pts = String::new();
            for s in &p.samples {
                let _ = write!(pts, "{:.1},{:.1} ", x_of(s.t_ms), y_of(value(s, i)));
            }
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{}"/>"#,
                pts.trim_end()
            );
        }
    }
    o.push_str("</svg>\n");
    o
}

/// A tick label: at most two decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(nice_step(168.0, 12.0), 20.0);
        assert_eq!(nice_step(24.0, 12.0), 2.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert!((nice_step(1.0, 12.0) - 0.1).abs() < 1e-12);
        assert_eq!(num(0.30000000000000004), "0.3");
        assert_eq!(num(20.0), "20");
    }
}
