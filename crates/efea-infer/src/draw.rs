//! Pictures of a prediction: boxes, labels and per-face probability bars drawn over the image,
//! and Grad-CAM heat maps blended over a face. Text uses the public-domain 8x8 bitmap font, so
//! no font file is looked up or shipped.

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, Luma, Pixel, Rgb, RgbImage};

use crate::gradcam::CamMap;
use crate::predictor::{Prediction, Rect};

/// One colour per class, in class order (Okabe-Ito's colour-blind-safe palette, plus grey).
pub const CLASS_COLORS: [[u8; 3]; 8] = [
    [213, 94, 0],    // vermillion
    [0, 158, 115],   // bluish green
    [204, 121, 167], // reddish purple
    [240, 228, 66],  // yellow
    [86, 180, 233],  // sky blue
    [230, 159, 0],   // orange
    [0, 114, 178],   // blue
    [170, 170, 170], // grey
];

const INK: [u8; 3] = [255, 255, 255];
const PANEL: [u8; 3] = [20, 20, 20];

/// The colour of class `index`.
pub fn class_color(index: usize) -> [u8; 3] {
    CLASS_COLORS[index % CLASS_COLORS.len()]
}

/// `image` with each face's box (in the colour of its label), the label and its probability
/// above the box, one bar per class below it, and a legend of the class colours.
pub fn annotate(image: &DynamicImage, prediction: &Prediction, classes: &[String]) -> RgbImage {
    let mut canvas = image.to_rgb8();
    let (width, height) = canvas.dimensions();
    let image_scale = (width.min(height) / 400).clamp(1, 4);
    for face in &prediction.faces {
        let color = class_color(face.class);
        let b = face.bbox;
        let scale = (b.width / 48).clamp(1, 4).max(image_scale.min(2));
        let thickness = (b.width / 40).clamp(2, 6) as i32;
        stroke_rect(&mut canvas, b, thickness, color);

        let label = format!("{} {:.0}%", face.label, 100.0 * face.confidence());
        let text_h = 8 * scale as i32 + 4;
        let text_w = label.len() as i32 * 8 * scale as i32 + 4;
        // Above the box, or inside its top edge when the box touches the image top.
        let label_y = if b.y - text_h >= 0 { b.y - text_h } else { b.y };
        fill_rect(&mut canvas, b.x, label_y, text_w, text_h, color);
        draw_text(&mut canvas, b.x + 2, label_y + 2, &label, scale, PANEL);

        // One bar per class under the box, longest for the most probable class.
        let bar_h = 2 * scale as i32;
        let gap = 1;
        let panel_w = (b.width as i32).max(24);
        let panel_h = face.probabilities.len() as i32 * (bar_h + gap) + gap;
        let top = b.y + b.height as i32 + thickness;
        fill_rect(
            &mut canvas,
            b.x - thickness,
            top,
            panel_w + 2 * thickness,
            panel_h,
            PANEL,
        );
        for (index, (_, p)) in face.probabilities.iter().enumerate() {
            let y = top + gap + index as i32 * (bar_h + gap);
            let w = ((panel_w - 2) as f32 * p.clamp(0.0, 1.0)).round() as i32;
            fill_rect(&mut canvas, b.x + 1, y, w.max(1), bar_h, class_color(index));
        }
    }
    if !prediction.faces.is_empty() {
        draw_legend(&mut canvas, classes, image_scale);
    }
    canvas
}

/// The class colours with their names, in the top-left corner.
fn draw_legend(canvas: &mut RgbImage, classes: &[String], scale: u32) {
    let line = 8 * scale as i32 + 4;
    let longest = classes.iter().map(String::len).max().unwrap_or(0) as i32;
    let w = (longest + 2) * 8 * scale as i32 + 8;
    fill_rect(canvas, 0, 0, w, classes.len() as i32 * line + 4, PANEL);
    for (index, name) in classes.iter().enumerate() {
        let y = 4 + index as i32 * line;
        let s = 8 * scale as i32;
        fill_rect(canvas, 4, y, s, s, class_color(index));
        draw_text(canvas, 4 + s + 4 * scale as i32, y, name, scale, INK);
    }
}

/// The square `crop` of `image` (border pixels repeated outside it) as `side x side`, with
/// `cam` blended over it in the turbo colour map.
pub fn cam_overlay(image: &RgbImage, crop: Rect, cam: &CamMap, side: u32) -> RgbImage {
    let face = resize(&crop_clamped(image, crop), side);
    let heat = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(
        cam.width as u32,
        cam.height as u32,
        cam.values.clone(),
    )
    .expect("a CamMap holds width * height values");
    let heat = imageops::resize(&heat, side, side, FilterType::Triangle);
    RgbImage::from_fn(side, side, |x, y| {
        let v = heat.get_pixel(x, y)[0].clamp(0.0, 1.0);
        let color = turbo(v);
        let base = face.get_pixel(x, y).0;
        // Weak evidence stays mostly transparent so the face remains readable.
        let alpha = 0.25 + 0.4 * v;
        Rgb(std::array::from_fn(|c| {
            (base[c] as f32 * (1.0 - alpha) + color[c] as f32 * alpha).round() as u8
        }))
    })
}

fn resize(image: &RgbImage, side: u32) -> RgbImage {
    if image.dimensions() == (side, side) {
        image.clone()
    } else {
        imageops::resize(image, side, side, FilterType::Triangle)
    }
}

/// The pixels of `rect`, repeating the border where it leaves the image (as the crops the
/// network sees do).
pub fn crop_clamped<P: Pixel + 'static>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    rect: Rect,
) -> ImageBuffer<P, Vec<P::Subpixel>> {
    let (width, height) = image.dimensions();
    let inside = rect.x >= 0
        && rect.y >= 0
        && rect.x as i64 + rect.width as i64 <= width as i64
        && rect.y as i64 + rect.height as i64 <= height as i64;
    if inside {
        return imageops::crop_imm(image, rect.x as u32, rect.y as u32, rect.width, rect.height)
            .to_image();
    }
    ImageBuffer::from_fn(rect.width.max(1), rect.height.max(1), |x, y| {
        let sx = (rect.x as i64 + x as i64).clamp(0, width as i64 - 1) as u32;
        let sy = (rect.y as i64 + y as i64).clamp(0, height as i64 - 1) as u32;
        *image.get_pixel(sx, sy)
    })
}

/// Google's Turbo colour map (Mikhailov, 2019), its published polynomial approximation:
/// dark blue at 0, green in the middle, dark red at 1.
pub fn turbo(v: f32) -> [u8; 3] {
    let x = v.clamp(0.0, 1.0) as f64;
    let (x2, x3, x4, x5) = (x * x, x * x * x, x.powi(4), x.powi(5));
    let r = 0.13572138 + 4.61539260 * x - 42.66032258 * x2 + 132.13108234 * x3 - 152.94239396 * x4
        + 59.28637943 * x5;
    let g = 0.09140261 + 2.19418839 * x + 4.84296658 * x2 - 14.18503333 * x3
        + 4.27729857 * x4
        + 2.82956604 * x5;
    let b = 0.10667330 + 12.64194608 * x - 60.58204836 * x2 + 110.36276771 * x3 - 89.90310912 * x4
        + 27.34824973 * x5;
    [r, g, b].map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
}

fn fill_rect(image: &mut RgbImage, x: i32, y: i32, w: i32, h: i32, color: [u8; 3]) {
    let (width, height) = image.dimensions();
    let x0 = x.max(0) as u32;
    let y0 = y.max(0) as u32;
    let x1 = (x as i64 + w as i64).clamp(0, width as i64) as u32;
    let y1 = (y as i64 + h as i64).clamp(0, height as i64) as u32;
    for py in y0..y1 {
        for px in x0..x1 {
            image.put_pixel(px, py, Rgb(color));
        }
    }
}

fn stroke_rect(image: &mut RgbImage, rect: Rect, thickness: i32, color: [u8; 3]) {
    let (w, h) = (rect.width as i32, rect.height as i32);
    // The line grows outwards, so the face itself stays uncovered.
    let (x, y, t) = (rect.x, rect.y, thickness);
    fill_rect(image, x - t, y - t, w + 2 * t, t, color);
    fill_rect(image, x - t, y + h, w + 2 * t, t, color);
    fill_rect(image, x - t, y, t, h, color);
    fill_rect(image, x + w, y, t, h, color);
}

/// ASCII `text` in the 8x8 font (efea-data's, as the previews draw it) in `color`.
fn draw_text(image: &mut RgbImage, x: i32, y: i32, text: &str, scale: u32, color: [u8; 3]) {
    efea_data::preview::draw_text(image, x as i64, y as i64, text, scale, Rgb(color));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_runs_from_blue_to_red() {
        // (At exactly 0 the polynomial fit is a near-black violet with r a hair above b.)
        let [r0, _, b0] = turbo(0.1);
        let [r1, _, b1] = turbo(1.0);
        assert!(b0 > r0 && r1 > b1, "{:?} {:?}", turbo(0.1), turbo(1.0));
        let [_, g, _] = turbo(0.5);
        assert!(g > 200);
    }

    #[test]
    fn crops_outside_the_image_repeat_its_border() {
        let image = RgbImage::from_fn(10, 10, |x, _| Rgb([x as u8 * 20, 0, 0]));
        let rect = Rect {
            x: -3,
            y: 2,
            width: 6,
            height: 6,
        };
        let crop = crop_clamped(&image, rect);
        assert_eq!(crop.dimensions(), (6, 6));
        assert_eq!(crop.get_pixel(0, 0)[0], 0);
        assert_eq!(crop.get_pixel(5, 0)[0], 40);
    }
}
