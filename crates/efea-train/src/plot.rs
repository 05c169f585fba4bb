//! Pictures of a run: `curves.png` (loss, accuracy and learning rate per epoch) and
//! `confusion.png` (per split, counts and row-normalised). Drawn with plotters into memory,
//! encoded as PNG and written atomically, with an embedded DejaVu Sans (no system fonts).

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::checkpoint::write_atomic;
use crate::error::{Result, TrainError};
use crate::metrics::EpochMetrics;
use crate::report::SplitReport;

/// DejaVu Sans 2.37 (Bitstream Vera license, see `assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The font family every chart efea draws uses (training curves, confusion matrices, video
/// timelines), after [`register_font`]: text looks the same everywhere, no system font lookup.
pub const FAMILY: &str = "sans-serif";

/// Registers the compiled-in font as [`FAMILY`] with plotters (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would show as missing text.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);

/// Renders `draw` on a `width x height` white canvas and writes it to `path` as PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font();
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root).map_err(|message| TrainError::Plot {
            path: path.to_path_buf(),
            message,
        })?;
        root.present().map_err(|e| TrainError::Plot {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    let image =
        image::RgbImage::from_raw(width, height, pixels).expect("the buffer is width * height * 3");
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| TrainError::Plot {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &png)
}

/// `curves.png`: train and selection loss, accuracy, and the learning rate, per epoch.
pub fn curves(history: &[EpochMetrics], select_name: &str, path: &Path) -> Result<()> {
    render(path, (1500, 460), |root| {
        let panels = root.split_evenly((1, 3));
        let epochs = history.len().max(2) as f64;
        let x_range = 1.0..epochs;
        let series = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
            history.iter().map(|m| (m.epoch as f64, f(m))).collect()
        };
        let val_label = format!("{select_name} (selection)");
        let losses: Vec<f64> = history
            .iter()
            .flat_map(|m| [m.train_loss, m.val_loss])
            .filter(|v| v.is_finite())
            .collect();
        let max_loss = losses.iter().cloned().fold(0.0f64, f64::max).max(1e-3) * 1.05;
        line_panel(
            &panels[0],
            "Loss",
            "cross-entropy",
            x_range.clone(),
            0.0..max_loss,
            &[
                ("train", series(|m| m.train_loss), TRAIN_COLOR),
                (&val_label, series(|m| m.val_loss), VAL_COLOR),
            ],
        )?;
        line_panel(
            &panels[1],
            "Accuracy",
            "accuracy (%)",
            x_range.clone(),
            0.0..100.0,
            &[
                ("train", series(|m| 100.0 * m.train_accuracy), TRAIN_COLOR),
                (&val_label, series(|m| 100.0 * m.val_accuracy), VAL_COLOR),
            ],
        )?;
        lr_panel(&panels[2], x_range, &series(|m| m.lr))
    })
}

/// One curve of a panel: its legend, its points and its colour.
type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

fn line_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    x: Range<f64>,
    y: Range<f64>,
    lines: &[Series<'_>],
) -> std::result::Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(58)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, points, color) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())
}

fn lr_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    x: Range<f64>,
    points: &[(f64, f64)],
) -> std::result::Result<(), String> {
    let positive: Vec<f64> = points.iter().map(|p| p.1).filter(|v| *v > 0.0).collect();
    let hi = positive.iter().cloned().fold(f64::MIN_POSITIVE, f64::max) * 2.0;
    let lo = positive.iter().cloned().fold(hi, f64::min) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("Learning rate", (FAMILY, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(x, (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("lr (last batch)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied().filter(|p| p.1 > 0.0),
            TRAIN_COLOR.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `confusion.png`: one row per split, counts on the left, row-normalised on the right.
pub fn confusions(splits: &[&SplitReport], classes: &[String], path: &Path) -> Result<()> {
    const PANEL: u32 = 600;
    let height = PANEL * splits.len() as u32;
    render(path, (2 * PANEL, height), |root| {
        let rows = root.split_evenly((splits.len(), 2));
        for (i, split) in splits.iter().enumerate() {
            let counts: Vec<Vec<f64>> = split
                .confusion
                .counts
                .iter()
                .map(|r| r.iter().map(|&c| c as f64).collect())
                .collect();
            let max = counts.iter().flatten().cloned().fold(1.0, f64::max);
            let shade: Vec<Vec<f64>> = counts
                .iter()
                .map(|r| r.iter().map(|c| c / max).collect())
                .collect();
            let labels: Vec<Vec<String>> = counts
                .iter()
                .map(|r| r.iter().map(|c| format!("{c:.0}")).collect())
                .collect();
            let title = format!(
                "{}: counts (accuracy {:.1} %)",
                split.title(),
                100.0 * split.accuracy
            );
            heatmap(&rows[2 * i], &title, classes, &shade, &labels)?;
            let normalized = split.confusion.row_normalized();
            let labels: Vec<Vec<String>> = normalized
                .iter()
                .map(|r| r.iter().map(|v| format!("{:.0}", 100.0 * v)).collect())
                .collect();
            let title = format!("{}: % of each true class", split.title());
            heatmap(&rows[2 * i + 1], &title, classes, &normalized, &labels)?;
        }
        Ok(())
    })
}

/// A square grid of cells shaded by `shade` (0..1) and labelled.
fn heatmap(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    classes: &[String],
    shade: &[Vec<f64>],
    labels: &[Vec<String>],
) -> std::result::Result<(), String> {
    let (width, height) = area.dim_in_pixel();
    let k = classes.len().max(1) as i32;
    let (left, top, right, bottom) = (100i32, 46i32, 16i32, 86i32);
    let grid = ((width as i32 - left - right).min(height as i32 - top - bottom)).max(k);
    let cell = grid / k;
    let font = |size: u32| (FAMILY, size).into_font();
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let center = Pos::new(HPos::Center, VPos::Center);
    area.draw(&Text::new(
        title.to_string(),
        (width as i32 / 2, 18),
        font(17).color(&BLACK).pos(center),
    ))
    .map_err(err)?;
    let value_size = (cell / 3).clamp(9, 16) as u32;
    for (r, row) in shade.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let (x0, y0) = (left + c as i32 * cell, top + r as i32 * cell);
            area.draw(&Rectangle::new(
                [(x0, y0), (x0 + cell, y0 + cell)],
                blues(v).filled(),
            ))
            .map_err(err)?;
            area.draw(&Rectangle::new(
                [(x0, y0), (x0 + cell, y0 + cell)],
                BLACK.mix(0.15),
            ))
            .map_err(err)?;
            let ink = if v > 0.55 { WHITE } else { BLACK };
            let text = labels[r][c].clone();
            area.draw(&Text::new(
                text,
                (x0 + cell / 2, y0 + cell / 2),
                font(value_size).color(&ink).pos(center),
            ))
            .map_err(err)?;
        }
    }
    let label_size = 13;
    for (i, name) in classes.iter().enumerate() {
        let name = short(name);
        let y = top + i as i32 * cell + cell / 2;
        let right_aligned = Pos::new(HPos::Right, VPos::Center);
        area.draw(&Text::new(
            name.clone(),
            (left - 6, y),
            font(label_size).color(&BLACK).pos(right_aligned),
        ))
        .map_err(err)?;
        let x = left + i as i32 * cell + cell / 2;
        let below = Pos::new(HPos::Center, VPos::Top);
        // Alternate rows so that long names of neighbouring columns do not overlap.
        let y = top + grid + 6 + (i as i32 % 2) * 16;
        area.draw(&Text::new(
            name,
            (x, y),
            font(label_size).color(&BLACK).pos(below),
        ))
        .map_err(err)?;
    }
    let axis = font(14).color(&BLACK.mix(0.8));
    area.draw(&Text::new(
        "predicted",
        (left + grid / 2, top + grid + 48),
        axis.clone().pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(err)?;
    area.draw(&Text::new(
        "true",
        (12, top + grid / 2),
        axis.pos(Pos::new(HPos::Left, VPos::Center)),
    ))
    .map_err(err)?;
    Ok(())
}

/// Class names up to 10 characters.
fn short(name: &str) -> String {
    if name.chars().count() <= 10 {
        name.to_string()
    } else {
        name.chars().take(9).chain(['.']).collect()
    }
}

/// Matplotlib's "Blues", approximated: white to dark blue.
fn blues(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Confusion;

    #[test]
    fn pictures_are_pngs_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let history: Vec<EpochMetrics> = (1..=3)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 2.0 / e as f64,
                train_accuracy: 0.2 * e as f64,
                val_loss: 2.2 / e as f64,
                val_accuracy: 0.18 * e as f64,
                lr: 0.01,
                images_per_sec: 100.0,
                seconds: 1.0,
            })
            .collect();
        let path = dir.path().join("curves.png");
        curves(&history, "holdout", &path).unwrap();
        assert_eq!(image::image_dimensions(&path).unwrap(), (1500, 460));

        let classes: Vec<String> = ["Angry", "Disgust", "Fear"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut confusion = Confusion::new(3);
        confusion.add(0, 0);
        confusion.add(1, 2);
        let split = SplitReport {
            split: "test".into(),
            tta: None,
            samples: 2,
            loss: 1.0,
            accuracy: 0.5,
            macro_f1: confusion.macro_f1(),
            per_class: confusion.per_class(&classes),
            confusion,
            images_per_sec: 1.0,
        };
        let path = dir.path().join("confusion.png");
        confusions(&[&split, &split], &classes, &path).unwrap();
        assert_eq!(image::image_dimensions(&path).unwrap(), (1200, 1200));
    }
}
