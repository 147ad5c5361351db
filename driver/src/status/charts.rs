//! Line charts drawn as SVG on the server: no JavaScript, no chart library. Each chart has its
//! own y scale from zero to the largest value, a time axis in seconds before now, and a legend.

use std::fmt::Write;

pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    /// (milliseconds since the epoch, value), oldest first.
    pub points: Vec<(i64, f64)>,
}

const WIDTH: f64 = 460.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 34.0;

/// An SVG chart of `series` over the last `window_ms` before `now_ms`, values in `unit`.
pub fn line_chart(
    title: &str,
    unit: &str,
    series: &[Series<'_>],
    now_ms: i64,
    window_ms: i64,
) -> String {
    let start = now_ms - window_ms;
    let max = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(t, _)| *t >= start)
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x = |t: i64| LEFT + (t - start) as f64 / window_ms as f64 * (WIDTH - LEFT - 8.0);
    let y = |v: f64| TOP + (1.0 - v / top) * (HEIGHT - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" aria-label="{title}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let _ = write!(svg, r##"<text x="{LEFT}" y="12" class="title">{title} ({unit})</text>"##);
    let (x0, x1, y0, y1) = (LEFT, WIDTH - 8.0, y(0.0), y(top));
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#999"/>"##
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" class="axis" text-anchor="end">{}</text><text x="{}" y="{}" class="axis" text-anchor="end">0</text>"##,
        LEFT - 4.0,
        y1 + 4.0,
        short(top),
        LEFT - 4.0,
        y0
    );
    let _ = write!(
        svg,
        r##"<text x="{x0}" y="{}" class="axis">-{}s</text><text x="{x1}" y="{}" class="axis" text-anchor="end">now</text>"##,
        HEIGHT - 6.0,
        window_ms / 1000,
        HEIGHT - 6.0
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(t, _)| *t >= start)
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        if !points.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                s.color,
                points.join(" ")
            );
        }
        let lx = LEFT + 110.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="21" width="10" height="3" fill="{}"/><text x="{}" y="27" class="axis">{}</text>"#,
            s.color,
            lx + 13.0,
            s.name
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `1234.5` as `1.2k`.
fn short(value: f64) -> String {
    let (v, suffix) = match value {
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    format!("{v:.1}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_each_series_in_the_window_with_its_scale() {
        let series = [Series {
            name: "input",
            color: "#1f77b4",
            points: vec![(0, 5.0), (9_000, 2_000.0), (10_000, 1_000.0)],
        }];
        let svg = line_chart("Records per second", "rec/s", &series, 10_000, 5_000);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains(">2.2k<"), "the top of the scale: {svg}");
        assert!(svg.contains("Records per second (rec/s)"), "{svg}");
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(
            points.split(' ').count(),
            2,
            "the point before the window is left out: {points}"
        );
    }
}
