//! The SVG: round-trip latency CDF per transport (8-byte messages) and throughput by
//! message size, log scales.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Figures;

fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(100, 100, 255),
    ];
    PALETTE[i % PALETTE.len()]
}

/// `value * scale` with an SI prefix: 1.5e-6 s → "1.5 µs", 65536 B → "65.5 kB".
fn si(value: f64, unit: &str, scale: f64) -> String {
    let v = value * scale;
    let (div, prefix) = [
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
    ]
    .into_iter()
    .find(|(d, _)| v.abs() >= *d)
    .unwrap_or((1e-9, "n"));
    format!("{} {prefix}{unit}", (v / div * 10.0).round() / 10.0)
}

pub(crate) fn svg(figures: &Figures, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(700);

    // Latency CDF at 8 bytes.
    let series: Vec<(String, Vec<(f64, f64)>)> = figures
        .rows
        .iter()
        .filter(|r| r.size == 8 && r.rtt.is_some())
        .map(|r| {
            let h = r.rtt.as_ref().unwrap();
            let points = (0..=200)
                .map(|i| {
                    let q = f64::from(i) / 200.0 * 0.999;
                    (h.value_at_quantile(q).max(1) as f64, q)
                })
                .collect();
            (format!("{} ({})", r.transport, r.mode), points)
        })
        .collect();
    let max_ns = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(1000.0, f64::max);
    let mut chart = ChartBuilder::on(&left)
        .caption("Round-trip latency CDF, 8 B", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((50f64..max_ns * 1.2).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("round trip")
        .y_desc("fraction ≤ x")
        .x_label_formatter(&|v| si(*v, "s", 1e-9))
        .draw()?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        chart
            .draw_series(LineSeries::new(points, colour(i).stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour(i)));
    }
    chart
        .configure_series_labels()
        // Between the shared-memory curves (< 1 µs) and the kernel ones (> 8 µs).
        .position(SeriesLabelPosition::Coordinate(230, 60))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    // Throughput by size.
    let mut by_transport: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for r in &figures.rows {
        if let Some(b) = r.bytes_per_s {
            let name = if r.api == "copy" {
                r.transport.clone()
            } else {
                format!("{} {}", r.transport, r.api)
            };
            by_transport
                .entry(name)
                .or_default()
                .push((r.size as f64, b.max(1.0)));
        }
    }
    let max_b = by_transport
        .values()
        .flat_map(|p| p.iter().map(|(_, b)| *b))
        .fold(1e6, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("One-way throughput by message size", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (4f64..131072f64).log_scale(),
            (1e5f64..max_b * 300.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("bytes/s")
        .x_label_formatter(&|v| si(*v, "B", 1.0))
        .y_label_formatter(&|v| si(*v, "B/s", 1.0))
        .draw()?;
    for (i, (name, mut points)) in by_transport.into_iter().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points, colour(i).stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour(i)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
