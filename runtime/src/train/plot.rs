//! `curves.svg`: one panel per quantity (loss, each metric, the learning rate), training and
//! validation curves together, drawn from `metrics.jsonl` with plotters' SVG backend (text is
//! laid out without font files).

use super::record::{read_jsonl, Row, JSONL};
use crate::error::{ErrorKind, RuntimeError};
use plotters::prelude::*;
use std::path::Path;

/// Keys of a record that are not curves.
const NOT_CURVES: &[&str] = &["epoch", "step", "seconds", "samples_per_second"];

/// Draws the curves of a run directory (or of a `metrics.jsonl` file) into `out_svg`
/// (`fmc plot`): records with nothing to draw are an error, not a blank picture.
pub fn plot(run_dir_or_jsonl: &Path, out_svg: &Path) -> Result<(), RuntimeError> {
    draw(run_dir_or_jsonl, out_svg, false)
}

/// `curves.svg` at the end of a run: drawn whatever the records hold (a run whose every value
/// is non-finite still finishes, with empty panels).
pub(crate) fn run_curves(run_dir: &Path, out_svg: &Path) -> Result<(), RuntimeError> {
    draw(run_dir, out_svg, true)
}

fn draw(run_dir_or_jsonl: &Path, out_svg: &Path, allow_blank: bool) -> Result<(), RuntimeError> {
    let jsonl = if run_dir_or_jsonl.is_dir() {
        run_dir_or_jsonl.join(JSONL)
    } else {
        run_dir_or_jsonl.to_path_buf()
    };
    if !jsonl.exists() {
        return Err(RuntimeError::at(
            ErrorKind::MissingFile,
            &jsonl,
            "no such file (expected a run directory or its metrics.jsonl)",
        ));
    }
    let rows = read_jsonl(&jsonl);
    if rows.is_empty() {
        return Err(RuntimeError::at(
            ErrorKind::BadFormat,
            &jsonl,
            "no metric records to plot",
        ));
    }
    let (x_key, groups) = panels(&rows);
    if !allow_blank
        && groups
            .iter()
            .all(|(_, list)| list.iter().all(|s| s.points.is_empty()))
    {
        // Nothing would be drawn: a blank picture is not a plot.
        return Err(RuntimeError::at(
            ErrorKind::BadFormat,
            &jsonl,
            format!("no record has both `{x_key}` and a metric value to plot (a finite number within 1e300)"),
        ));
    }
    let svg =
        render_svg(&x_key, &groups).map_err(|m| RuntimeError::at(ErrorKind::Write, out_svg, m))?;
    crate::fsutil::atomic_write(out_svg, svg.as_bytes())
}

/// One named series of (x, y) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Groups records into panels: `loss` with `val_loss`, `accuracy` with `val_accuracy`, ...
fn panels(rows: &[Row]) -> (String, Vec<(String, Vec<Series>)>) {
    // Epoch records carry `seconds`; step records (`--steps`) are plotted against the step.
    // Records without a step (written by hand, say) are plotted against the epoch.
    let has = |key: &str| rows.iter().all(|r| r.iter().any(|(k, _)| k == key));
    let x_key = if !has("seconds") && has("step") {
        "step"
    } else {
        "epoch"
    };
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for (k, _) in row {
            if !NOT_CURVES.contains(&k.as_str()) && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let mut groups: Vec<(String, Vec<Series>)> = Vec::new();
    for name in names {
        let base = name.strip_prefix("val_").unwrap_or(&name).to_string();
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                let x = r
                    .iter()
                    .find(|(k, _)| k == x_key)
                    .and_then(|(_, v)| v.as_f64())?;
                let y = r
                    .iter()
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, v)| v.as_f64())?;
                (plottable(x) && plottable(y)).then_some((x, y))
            })
            .collect();
        let series = Series {
            name: name.clone(),
            points,
        };
        match groups.iter_mut().find(|(b, _)| *b == base) {
            Some((_, list)) => list.push(series),
            None => groups.push((base, vec![series])),
        }
    }
    (x_key.to_string(), groups)
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn render_svg(x_key: &str, groups: &[(String, Vec<Series>)]) -> Result<String, String> {
    let columns = groups.len().clamp(1, 2);
    let panel_rows = groups.len().div_ceil(columns).max(1);
    let size = (480 * columns as u32, 320 * panel_rows as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((panel_rows, columns));
        for ((title, series), area) in groups.iter().zip(areas.iter()) {
            let all: Vec<(f64, f64)> = series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .collect();
            if all.is_empty() {
                continue;
            }
            let (x0, x1) = range(all.iter().map(|p| p.0));
            let (y0, y1) = range(all.iter().map(|p| p.1));
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(x_key)
                // Epochs and steps are whole numbers: no trailing ".0".
                .x_label_formatter(&|x| format!("{x}"))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, s) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Whether a value can be drawn: finite, and small enough that the span of two such values
/// is finite too (plotters never returned from a range of -1e308 to 1e308). A run's values
/// are f32, so this only skips what a hand-edited file holds.
fn plottable(v: f64) -> bool {
    v.abs() <= 1e300
}

/// A plotting range around the values, never empty.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}
