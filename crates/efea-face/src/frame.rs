//! The one geometry that turns a detected face into a network input: the square around the
//! box grown by a margin, optionally rotated so the eyes are level, cut out and resized. The
//! dataset loaders, the predictor and the pictures all frame faces through [`Framing`], so a
//! face is cut at prediction exactly as it was in training.

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};
use serde::{Deserialize, Serialize};

use crate::FaceBox;

/// Margin added around a detected face on each side, as a fraction of the box side: detector
/// boxes are tight around eyes and mouth; the usual FER crops include brows and chin.
pub const DEFAULT_MARGIN: f32 = 0.2;

/// The largest margin accepted: a crop of `1 + 2 * 2 = 5` times the face side already holds
/// more background than face; larger values only allocate.
pub const MAX_MARGIN: f32 = 2.0;

/// Eye lines tilted by less than this (radians, about 0.6 degrees) are treated as level: the
/// rotation would move no pixel by more than a fraction of one at FER sizes.
const LEVEL_EPSILON: f32 = 0.01;

/// How a face box becomes a crop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Framing {
    /// Added on each side, as a fraction of the box's longer side, in `[0, MAX_MARGIN]`.
    pub margin: f32,
    /// Rotate the crop so the eyes are level (needs landmarks; boxes without them are cut
    /// upright).
    pub align: bool,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            margin: DEFAULT_MARGIN,
            align: false,
        }
    }
}

impl Framing {
    /// Why this framing cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=MAX_MARGIN).contains(&self.margin) {
            return Err(format!(
                "margin {} is outside 0..={MAX_MARGIN} (a fraction of the face side added on each side)",
                self.margin
            ));
        }
        Ok(())
    }

    /// The square this framing cuts around `face`.
    pub fn frame(&self, face: &FaceBox) -> Frame {
        let margin = self.margin.clamp(0.0, MAX_MARGIN);
        let side = (face.width.max(face.height) * (1.0 + 2.0 * margin))
            .round()
            .max(1.0) as u32;
        let angle = match (&face.landmarks, self.align) {
            (Some(landmarks), true) => landmarks.eye_angle(),
            _ => 0.0,
        };
        Frame {
            centre_x: face.x + face.width / 2.0,
            centre_y: face.y + face.height / 2.0,
            side,
            angle: if angle.abs() < LEVEL_EPSILON {
                0.0
            } else {
                angle
            },
        }
    }
}

/// A square of an image: where a face is cut from. It may extend past the image border
/// (those pixels repeat the border).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub centre_x: f32,
    pub centre_y: f32,
    /// Side in pixels of the image.
    pub side: u32,
    /// Rotation of the square in radians, clockwise in image coordinates (y down): the angle
    /// of the eye line. 0 for an upright crop.
    pub angle: f32,
}

impl Frame {
    /// The centred square of side `fraction * min(width, height)`: the frame of an image that
    /// is already a face crop, and of a CK+ frame whose face was not found.
    pub fn centred(width: u32, height: u32, fraction: f32) -> Self {
        let side = (width.min(height) as f32 * fraction.clamp(0.05, 1.0))
            .round()
            .max(1.0) as u32;
        Self {
            centre_x: width as f32 / 2.0,
            centre_y: height as f32 / 2.0,
            side,
            angle: 0.0,
        }
    }

    /// Left and top of the upright square, in whole pixels.
    pub fn origin(&self) -> (i64, i64) {
        let half = self.side as f32 / 2.0;
        (
            (self.centre_x - half).round() as i64,
            (self.centre_y - half).round() as i64,
        )
    }

    /// The frame cut out of `image` and resized to `size x size`.
    pub fn cut(&self, image: &GrayImage, size: u32) -> GrayImage {
        if self.angle == 0.0 {
            let (left, top) = self.origin();
            resize_to(&square_clamped(image, left, top, self.side), size)
        } else {
            self.cut_rotated(image, size)
        }
    }

    /// Rotated frames: the upright square that holds the rotated one is cut and resized first
    /// (so shrinking a large face averages instead of aliasing), then sampled bilinearly along
    /// the rotated axes.
    fn cut_rotated(&self, image: &GrayImage, size: u32) -> GrayImage {
        let (sin, cos) = self.angle.sin_cos();
        let reach = self.side as f32 * (sin.abs() + cos.abs());
        let outer_side = reach.ceil() as u32 + 2;
        let half = outer_side as f32 / 2.0;
        let left = (self.centre_x - half).round() as i64;
        let top = (self.centre_y - half).round() as i64;
        let scale = size as f32 / self.side as f32;
        let small_side = ((outer_side as f32 * scale).round() as u32).max(2);
        let outer = resize_to(&square_clamped(image, left, top, outer_side), small_side);
        // The frame's centre in `outer`'s pixels (pixel centres at +0.5).
        let pixels_per_unit = small_side as f32 / outer_side as f32;
        let centre_x = (self.centre_x - left as f32) * pixels_per_unit;
        let centre_y = (self.centre_y - top as f32) * pixels_per_unit;
        let step = self.side as f32 * pixels_per_unit / size as f32;
        GrayImage::from_fn(size, size, |u, v| {
            let dx = (u as f32 + 0.5 - size as f32 / 2.0) * step;
            let dy = (v as f32 + 0.5 - size as f32 / 2.0) * step;
            let x = centre_x + dx * cos - dy * sin;
            let y = centre_y + dx * sin + dy * cos;
            Luma([bilinear(&outer, x, y)])
        })
    }
}

/// `image` resized to `size x size` (a copy when it already is); the filter of every crop.
fn resize_to(image: &GrayImage, size: u32) -> GrayImage {
    if image.dimensions() == (size, size) {
        return image.clone();
    }
    // Triangle widens its support with the scale factor, so shrinking a 640-pixel frame to 48
    // averages instead of aliasing.
    imageops::resize(image, size, size, FilterType::Triangle)
}

/// The `side x side` square at `left, top`; parts outside the image repeat its border.
fn square_clamped(image: &GrayImage, left: i64, top: i64, side: u32) -> GrayImage {
    let (width, height) = image.dimensions();
    let inside = left >= 0
        && top >= 0
        && left + side as i64 <= width as i64
        && top + side as i64 <= height as i64;
    if inside {
        return imageops::crop_imm(image, left as u32, top as u32, side, side).to_image();
    }
    GrayImage::from_fn(side, side, |x, y| {
        let sx = (left + x as i64).clamp(0, width as i64 - 1) as u32;
        let sy = (top + y as i64).clamp(0, height as i64 - 1) as u32;
        *image.get_pixel(sx, sy)
    })
}

/// The value at `x, y` (pixel centres at +0.5), bilinear, the border repeated.
fn bilinear(image: &GrayImage, x: f32, y: f32) -> u8 {
    let (width, height) = image.dimensions();
    let fx = x - 0.5;
    let fy = y - 0.5;
    let x0 = fx.floor();
    let y0 = fy.floor();
    let tx = fx - x0;
    let ty = fy - y0;
    let at = |xi: f32, yi: f32| {
        let xi = (xi as i64).clamp(0, width as i64 - 1) as u32;
        let yi = (yi as i64).clamp(0, height as i64 - 1) as u32;
        image.get_pixel(xi, yi).0[0] as f32
    };
    let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1.0, y0) * tx;
    let bottom = at(x0, y0 + 1.0) * (1.0 - tx) + at(x0 + 1.0, y0 + 1.0) * tx;
    (top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Landmarks;

    fn face(x: f32, y: f32, side: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width: side,
            height: side,
            score: 1.0,
            landmarks: None,
        }
    }

    #[test]
    fn crops_are_square_at_the_requested_size_even_at_the_border() {
        let image = GrayImage::from_fn(64, 40, |x, _| Luma([(x * 4) as u8]));
        let frame = Framing::default().frame(&face(50.0, 30.0, 20.0));
        assert_eq!(frame.side, 28);
        assert_eq!(frame.origin(), (46, 26));
        assert_eq!(frame.cut(&image, 48).dimensions(), (48, 48));
        assert_eq!(
            Frame::centred(64, 40, 0.7).cut(&image, 48).dimensions(),
            (48, 48)
        );
    }

    #[test]
    fn margins_outside_the_range_are_refused() {
        for margin in [-0.1, 2.5, 1000.0, f32::NAN] {
            let framing = Framing {
                margin,
                align: false,
            };
            assert!(framing.check().is_err(), "{margin}");
        }
        assert!(Framing::default().check().is_ok());
    }

    /// A face drawn tilted by 20 degrees comes out with its eyes on one row when aligned, and
    /// not without alignment.
    #[test]
    fn alignment_levels_the_eyes() {
        let angle = 20f32.to_radians();
        let (sin, cos) = angle.sin_cos();
        let (cx, cy) = (100.0, 90.0);
        // Eyes 30 pixels either side of the centre along the tilted axis, 10 pixels above it.
        let eye = |side: f32| {
            let (dx, dy) = (side * 30.0, -10.0);
            [cx + dx * cos - dy * sin, cy + dx * sin + dy * cos]
        };
        let (left_eye, right_eye) = (eye(-1.0), eye(1.0));
        let image = GrayImage::from_fn(200, 180, |x, y| {
            let near = |p: [f32; 2]| (x as f32 + 0.5 - p[0]).hypot(y as f32 + 0.5 - p[1]) < 6.0;
            Luma([if near(left_eye) || near(right_eye) {
                255
            } else {
                0
            }])
        });
        let mut found = face(cx - 50.0, cy - 50.0, 100.0);
        found.landmarks = Some(Landmarks {
            points: [
                left_eye,
                right_eye,
                [cx, cy],
                [cx - 20.0, cy + 30.0],
                [cx + 20.0, cy + 30.0],
            ],
        });
        let eye_rows = |align: bool| {
            let crop = Framing { margin: 0.0, align }
                .frame(&found)
                .cut(&image, 100);
            // The brightness-weighted mean row of each half of the crop.
            let row_of = |columns: std::ops::Range<u32>| {
                let (mut mass, mut moment) = (0.0, 0.0);
                for y in 0..100 {
                    for x in columns.clone() {
                        let value = crop.get_pixel(x, y).0[0] as f32;
                        mass += value;
                        moment += value * y as f32;
                    }
                }
                moment / mass
            };
            (row_of(0..50), row_of(50..100))
        };
        let (left, right) = eye_rows(true);
        assert!(
            (left - right).abs() < 1.0,
            "aligned eyes on rows {left} and {right}"
        );
        assert!(
            (left - 39.5).abs() < 1.5,
            "aligned eyes 10 pixels above the centre: {left}"
        );
        let (left, right) = eye_rows(false);
        assert!(
            (left - right).abs() > 15.0,
            "upright eyes on rows {left} and {right}"
        );
    }

    #[test]
    fn boxes_without_landmarks_are_cut_upright_even_when_aligning() {
        let framing = Framing {
            margin: 0.1,
            align: true,
        };
        assert_eq!(framing.frame(&face(10.0, 10.0, 30.0)).angle, 0.0);
    }
}
