//! The latency benchmarks' chart: each run's histogram of latencies as a step line,
//! counts on a log scale over microseconds, all runs in one SVG, the way rt-tests and OSADL
//! latency plots look. Written by hand (an SVG of a few lines and labels needs no crate).

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// One run's line: its name and its non-empty 1 µs buckets `(microseconds, count)`.
pub struct Series<'a> {
    pub name: &'a str,
    pub buckets: &'a [(u64, u64)],
}

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Writes the chart of `series`, titled `title`, as `target/bench/<file>`; returns its path.
pub fn write(title: &str, series: &[Series<'_>], file: &str) -> Result<PathBuf> {
    let chart = bulkhead_e2e::workspace_root()
        .join("target/bench")
        .join(file);
    if let Some(dir) = chart.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&chart, svg(title, series))
        .with_context(|| format!("writing {}", chart.display()))?;
    Ok(chart)
}

/// The chart of `series`, titled `title`.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let max_us = series
        .iter()
        .flat_map(|s| s.buckets.iter().map(|&(us, _)| us))
        .max()
        .unwrap_or(0)
        + 2;
    let max_count = series
        .iter()
        .flat_map(|s| s.buckets.iter().map(|&(_, n)| n))
        .max()
        .unwrap_or(1)
        .max(1);
    // Whole decades, at least one.
    let decades = ((max_count as f64).log10().ceil() as u32).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |us: f64| LEFT + us / max_us as f64 * plot_w;
    // A count of 0 sits on the axis; 1 is the first decade's bottom.
    let y = |count: u64| {
        let level = if count == 0 {
            -0.3
        } else {
            (count as f64).log10()
        };
        TOP + plot_h - (level + 0.3) / (f64::from(decades) + 0.3) * plot_h
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Axes, decade grid lines and labels, microsecond ticks.
    let _ = writeln!(
        out,
        r#"<path d="M{LEFT},{TOP} V{} H{}" stroke="black" fill="none"/>"#,
        TOP + plot_h,
        LEFT + plot_w
    );
    for decade in 0..=decades {
        let count = 10u64.pow(decade);
        let yy = y(count);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{count}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let step = tick_step(max_us);
    let mut us = 0;
    while us <= max_us {
        let xx = x(us as f64);
        let _ = writeln!(
            out,
            r#"<line x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{}" stroke="black"/><text x="{xx:.1}" y="{}" text-anchor="middle">{us}</text>"#,
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 18.0
        );
        us += step;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (us)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">samples (log scale)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // One step line per run, and its legend entry.
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = format!("M{:.1},{:.1}", x(0.0), y(0));
        let mut last_us = 0;
        for &(us, count) in s.buckets {
            if us > last_us {
                let _ = write!(d, " H{:.1} V{:.1}", x(us as f64), y(0));
            }
            let _ = write!(
                d,
                " H{:.1} V{:.1} H{:.1}",
                x(us as f64),
                y(count),
                x(us as f64 + 1.0)
            );
            last_us = us + 1;
        }
        let _ = write!(d, " V{:.1}", y(0));
        let _ = writeln!(
            out,
            r#"<path d="{d}" stroke="{colour}" stroke-width="1.5" fill="none"/>"#
        );
        let ly = TOP + 16.0 * i as f64 + 8.0;
        let lx = LEFT + plot_w - 180.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Microseconds between ticks: about ten ticks over `max_us`.
fn tick_step(max_us: u64) -> u64 {
    [1, 2, 5, 10, 20, 50, 100, 200, 500]
        .into_iter()
        .find(|&step| max_us / step <= 12)
        .unwrap_or(1000)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_line_and_a_legend_per_run() {
        let a = [(14, 9995), (15, 3), (40, 1)];
        let b = [(20, 10_000)];
        let chart = svg(
            "RT latency <test>",
            &[
                Series {
                    name: "bare",
                    buckets: &a,
                },
                Series {
                    name: "hypervisor",
                    buckets: &b,
                },
            ],
        );
        assert!(chart.starts_with("<svg "));
        assert!(chart.trim_end().ends_with("</svg>"));
        assert_eq!(chart.matches("stroke-width=\"1.5\"").count(), 2);
        assert!(chart.contains(">bare</text>") && chart.contains(">hypervisor</text>"));
        assert!(chart.contains("RT latency &lt;test&gt;"));
        // Decades up to 10^4 (10,000 samples), ticks every 5 us up to 42.
        assert!(chart.contains(">10000</text>"));
        assert!(chart.contains(">40</text>"));
        assert_eq!(svg("empty", &[]).matches("<path").count(), 1);
    }

    #[test]
    fn ticks_stay_about_ten() {
        assert_eq!(tick_step(10), 1);
        assert_eq!(tick_step(42), 5);
        assert_eq!(tick_step(1000), 100);
        assert_eq!(tick_step(100_000), 1000);
    }
}
