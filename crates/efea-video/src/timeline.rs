//! `--timeline out.png`: one panel per track, the seven smoothed probabilities over time (the
//! same time axis for every panel, so tracks can be compared), the track's thumbnail beside
//! its panel. Drawn with plotters in an embedded font, written atomically. A video
//! without faces gives a picture that says so, not an error.

use std::path::Path;

use efea_infer::draw::class_color;
use image::RgbImage;
use plotters::prelude::*;

use crate::analyse::{Analysis, THUMBNAIL_SIDE, TrackHistory};
use crate::error::{Result, VideoError};
use crate::summary::write_atomic;
use crate::time::clock;

use efea_train::plot::{FAMILY, register_font};

const WIDTH: u32 = 1400;
const HEADER: u32 = 56;
const PANEL: u32 = 190;
/// Left of each panel: the thumbnail and the track's name.
const SIDE: u32 = 150;

/// Draws the timeline of `analysis` as PNG at `path`.
pub fn write_timeline(analysis: &Analysis, path: &Path) -> Result<()> {
    let image = render(analysis).map_err(|message| VideoError::Plot {
        path: path.to_path_buf(),
        message,
    })?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| VideoError::Plot {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &png)
}

/// The timeline as a picture.
pub fn render(analysis: &Analysis) -> std::result::Result<RgbImage, String> {
    register_font();
    let tracks: Vec<&TrackHistory> = analysis
        .tracks
        .iter()
        .filter(|t| !t.observations.is_empty())
        .collect();
    let rows = tracks.len().max(1) as u32;
    let height = HEADER + rows * PANEL + 10;
    let mut pixels = vec![255u8; (WIDTH * height * 3) as usize];
    let t0 = analysis.first_time;
    let t1 = analysis.end_time.max(t0 + 1e-3);
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, height)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let name = analysis
            .info
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        root.draw(&Text::new(
            format!(
                "{name}: {} to {}, {} track{}",
                clock(t0),
                clock(t1),
                tracks.len(),
                if tracks.len() == 1 { "" } else { "s" }
            ),
            (12, 10),
            (FAMILY, 20).into_font().color(&BLACK),
        ))
        .map_err(|e| err(&e))?;
        // The legend: one swatch per class.
        let mut x = 12;
        for (index, class) in analysis.classes.iter().enumerate() {
            let [r, g, b] = class_color(index);
            root.draw(&Rectangle::new(
                [(x, 36), (x + 14, 50)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(|e| err(&e))?;
            root.draw(&Text::new(
                class.clone(),
                (x + 18, 35),
                (FAMILY, 15).into_font().color(&BLACK),
            ))
            .map_err(|e| err(&e))?;
            x += 24 + 9 * class.len() as i32 + 16;
        }
        if tracks.is_empty() {
            root.draw(&Text::new(
                "no face found".to_string(),
                (SIDE as i32, (HEADER + PANEL / 2 - 10) as i32),
                (FAMILY, 22).into_font().color(&BLACK.mix(0.6)),
            ))
            .map_err(|e| err(&e))?;
        }
        let summary = crate::summary::Summary::of(analysis);
        for (row, track) in tracks.iter().enumerate() {
            let top = (HEADER + row as u32 * PANEL) as i32;
            let area = root.clone().shrink((0, top), (WIDTH, PANEL));
            let (side, chart_area) = area.split_horizontally(SIDE);
            let on_screen = summary
                .tracks
                .iter()
                .find(|t| t.id == track.id)
                .map_or(0.0, |t| t.on_screen);
            side.draw(&Text::new(
                format!("track {}", track.id),
                (10, (THUMBNAIL_SIDE + 18) as i32),
                (FAMILY, 16).into_font().color(&BLACK),
            ))
            .map_err(|e| err(&e))?;
            side.draw(&Text::new(
                format!("{on_screen:.1} s on screen"),
                (10, (THUMBNAIL_SIDE + 38) as i32),
                (FAMILY, 13).into_font().color(&BLACK.mix(0.7)),
            ))
            .map_err(|e| err(&e))?;
            let mut chart = ChartBuilder::on(&chart_area)
                .margin(8)
                .margin_right(20)
                .x_label_area_size(if row + 1 == tracks.len() { 30 } else { 18 })
                .y_label_area_size(40)
                .build_cartesian_2d(t0..t1, 0.0f64..1.0)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .label_style((FAMILY, 12))
                .x_labels(12)
                .y_labels(3)
                .x_label_formatter(&|v| axis_time(*v, t1))
                .y_label_formatter(&|v| format!("{v:.1}"))
                .light_line_style(BLACK.mix(0.06))
                .draw()
                .map_err(|e| err(&e))?;
            for class in 0..analysis.classes.len() {
                let [r, g, b] = class_color(class);
                let color = RGBColor(r, g, b);
                // A gap in the line where the face was not seen for longer than a few
                // sampling intervals.
                let gap = 3.0 * analysis.sample_interval();
                let mut segment: Vec<(f64, f64)> = Vec::new();
                let mut last = f64::NEG_INFINITY;
                for o in &track.observations {
                    if o.time - last > gap && !segment.is_empty() {
                        chart
                            .draw_series(LineSeries::new(
                                std::mem::take(&mut segment),
                                color.stroke_width(2),
                            ))
                            .map_err(|e| err(&e))?;
                    }
                    segment.push((o.time, f64::from(o.smoothed[class])));
                    last = o.time;
                }
                chart
                    .draw_series(LineSeries::new(segment, color.stroke_width(2)))
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    let mut image =
        RgbImage::from_raw(WIDTH, height, pixels).expect("the buffer is width * height * 3");
    for (row, track) in tracks.iter().enumerate() {
        let top = HEADER + row as u32 * PANEL + 8;
        image::imageops::replace(&mut image, &track.thumbnail, 10, i64::from(top));
    }
    Ok(image)
}

/// A time axis label: seconds for a short clip, a clock for a long one.
fn axis_time(seconds: f64, end: f64) -> String {
    if end < 60.0 {
        format!("{seconds:.1} s")
    } else {
        clock(seconds)
    }
}
