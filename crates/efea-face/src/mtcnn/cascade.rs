//! The MTCNN cascade of facenet-pytorch 2.6.0 (`facenet_pytorch/models/utils/detect_face.py`,
//! `detect_face` and its helpers), line by line, for one image: the image pyramid,
//! `imresample` (PyTorch's `interpolate(mode="area")`), `generateBoundingBox`, torchvision's
//! `batched_nms`, `rerec`, `pad`, `bbreg` and the numpy `'Min'` NMS of the last stage.
//!
//! Arithmetic follows PyTorch's dtypes: boxes, scores and regressions are `f32` (a Python
//! float meeting a float32 tensor is rounded to `f32` first); pyramid scales and sizes are
//! computed in `f64`, as Python does.

/// facenet-pytorch's input normalisation: `(x - 127.5) * 0.0078125`.
pub const NORM_MEAN: f32 = 127.5;
pub const NORM_SCALE: f32 = 0.0078125;

/// P-Net's receptive field and its stride on the pyramid level (`generateBoundingBox`).
const CELL_SIZE: f32 = 12.0;
const CELL_STRIDE: f32 = 2.0;

/// A candidate box: corners in pixels of the original image, a score and, until it has been
/// applied, the regression of the net that scored it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub reg: [f32; 4],
}

/// The scales of the image pyramid: `12 / min_face_size`, times `factor` while the shorter
/// side stays at least 12 px.
pub fn pyramid_scales(width: usize, height: usize, min_face_size: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_face_size;
    let mut min_side = width.min(height) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while min_side >= 12.0 {
        scales.push(scale);
        scale *= factor;
        min_side *= factor;
    }
    scales
}

/// The pyramid level's size for `scale`: `(int(h * scale + 1), int(w * scale + 1))`.
pub fn level_size(width: usize, height: usize, scale: f64) -> (usize, usize) {
    (
        (width as f64 * scale + 1.0) as usize,
        (height as f64 * scale + 1.0) as usize,
    )
}

/// A rectangle of whole pixels, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// A window of an interleaved RGB8 image.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    /// Row-major, RGB interleaved, `stride` pixels a row.
    pub pixels: &'a [u8],
    pub stride: usize,
    pub window: Window,
}

impl<'a> Region<'a> {
    /// All of a `width` x `height` image.
    pub fn whole(pixels: &'a [u8], width: usize, height: usize) -> Self {
        Self {
            pixels,
            stride: width,
            window: Window {
                x: 0,
                y: 0,
                width,
                height,
            },
        }
    }
}

/// PyTorch's adaptive average pooling windows along one axis: output `i` averages inputs
/// `floor(i * n / m) .. ceil((i + 1) * n / m)`.
fn area_windows(input: usize, output: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..output).map(move |i| ((i * input) / output, ((i + 1) * input).div_ceil(output)))
}

/// `interpolate(region, size=(out_height, out_width), mode="area")` followed by
/// facenet-pytorch's normalisation, written planar (`[3, out_height, out_width]`) into `out`.
///
/// The window sums of 8-bit pixels are integers, exact in any order (below 2^24 they are
/// exact in `f32` as well, as PyTorch accumulates them); the average is then divided as
/// PyTorch's CPU kernel does it, `sum / kh / kw` in `f32`, which differs in the last bit
/// from `sum / (kh * kw)`.
pub fn area_resize_normalised(
    region: Region<'_>,
    out_width: usize,
    out_height: usize,
    out: &mut [f32],
    scratch: &mut Vec<u32>,
) {
    let plane = out_width * out_height;
    assert_eq!(out.len(), 3 * plane, "output buffer holds [3, h, w]");
    let Window {
        x: left,
        y: top,
        width,
        height,
    } = region.window;
    assert!(width > 0 && height > 0, "a non-empty region");
    // Pass 1: per input row, the horizontal window sums, [height, out_width, 3].
    scratch.clear();
    scratch.resize(height * out_width * 3, 0);
    let columns: Vec<(usize, usize)> = area_windows(width, out_width).collect();
    for row in 0..height {
        let start = ((top + row) * region.stride + left) * 3;
        let line = &region.pixels[start..start + width * 3];
        let sums = &mut scratch[row * out_width * 3..(row + 1) * out_width * 3];
        for (ox, &(x0, x1)) in columns.iter().enumerate() {
            let mut acc = [0u32; 3];
            for px in line[x0 * 3..x1 * 3].chunks_exact(3) {
                acc[0] += u32::from(px[0]);
                acc[1] += u32::from(px[1]);
                acc[2] += u32::from(px[2]);
            }
            sums[ox * 3..ox * 3 + 3].copy_from_slice(&acc);
        }
    }
    // Pass 2: vertical sums of those, then the average and the normalisation.
    let mut acc = vec![0u32; out_width * 3];
    for (oy, (y0, y1)) in area_windows(height, out_height).enumerate() {
        acc.fill(0);
        for row in y0..y1 {
            let sums = &scratch[row * out_width * 3..(row + 1) * out_width * 3];
            for (a, s) in acc.iter_mut().zip(sums) {
                *a += s;
            }
        }
        let kh = y1 - y0;
        for (ox, &(x0, x1)) in columns.iter().enumerate() {
            let kw = x1 - x0;
            for c in 0..3 {
                let mean = window_mean(acc[ox * 3 + c], kh, kw);
                out[c * plane + oy * out_width + ox] = (mean - NORM_MEAN) * NORM_SCALE;
            }
        }
    }
}

/// The mean of a `kh` x `kw` window from its sum, divided as PyTorch's CPU adaptive average
/// pooling divides: `sum / kh / kw`.
fn window_mean(sum: u32, kh: usize, kw: usize) -> f32 {
    sum as f32 / kh as f32 / kw as f32
}

/// `generateBoundingBox`: every cell of P-Net's face-probability map at or above `threshold`,
/// in row-major order, as a box of the original image with its regression.
///
/// `reg` is `[4, h, w]` and `prob_face` `[h, w]` (channel 1 of the softmax), both row-major.
pub fn generate_bounding_boxes(
    reg: &[f32],
    prob_face: &[f32],
    width: usize,
    height: usize,
    scale: f64,
    threshold: f32,
) -> Vec<Candidate> {
    let plane = width * height;
    assert_eq!(prob_face.len(), plane);
    assert_eq!(reg.len(), 4 * plane);
    // `(... / scale)` divides a float32 tensor by a Python float: in f32.
    let scale = scale as f32;
    let mut boxes = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let score = prob_face[i];
            if score >= threshold {
                let (bx, by) = (x as f32, y as f32);
                boxes.push(Candidate {
                    x1: ((CELL_STRIDE * bx + 1.0) / scale).floor(),
                    y1: ((CELL_STRIDE * by + 1.0) / scale).floor(),
                    x2: ((CELL_STRIDE * bx + CELL_SIZE - 1.0 + 1.0) / scale).floor(),
                    y2: ((CELL_STRIDE * by + CELL_SIZE - 1.0 + 1.0) / scale).floor(),
                    score,
                    reg: [
                        reg[i],
                        reg[plane + i],
                        reg[2 * plane + i],
                        reg[3 * plane + i],
                    ],
                });
            }
        }
    }
    boxes
}

/// Indices of `boxes` by decreasing score; ties keep their order (PyTorch's stable sort).
fn by_score_descending(boxes: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    order
}

/// torchvision's `nms` (its CPU kernel): greedy by decreasing score, dropping every box
/// whose IoU with a kept one is above `iou_threshold`; areas without the `+ 1` of the numpy
/// variant. Returns the kept indices by decreasing score, as `batched_nms` does for one image.
pub fn nms(boxes: &[Candidate], iou_threshold: f64) -> Vec<usize> {
    let order = by_score_descending(boxes);
    let areas: Vec<f32> = boxes
        .iter()
        .map(|b| (b.x2 - b.x1) * (b.y2 - b.y1))
        .collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[rank + 1..] {
            if suppressed[j] {
                continue;
            }
            let b = &boxes[j];
            let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
            let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
            let inter = w * h;
            let iou = inter / (areas[i] + areas[j] - inter);
            // The kernel compares a float with the double threshold.
            if f64::from(iou) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// facenet-pytorch's `nms_numpy(..., 'Min')` of the last stage: areas with `+ 1`, overlap as
/// intersection over the smaller area, a box kept while its overlap is at most `threshold`
/// (numpy compares the float32 overlap with the threshold rounded to float32). numpy's
/// `argsort` is not stable; ties are broken here as a stable ascending sort would, taking
/// the last (highest index) first.
pub fn nms_min(boxes: &[Candidate], threshold: f32) -> Vec<usize> {
    let areas: Vec<f32> = boxes
        .iter()
        .map(|b| (b.x2 - b.x1 + 1.0) * (b.y2 - b.y1 + 1.0))
        .collect();
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[a].score.total_cmp(&boxes[b].score));
    let mut pick = Vec::new();
    while let Some(i) = order.pop() {
        pick.push(i);
        let a = &boxes[i];
        order.retain(|&j| {
            let b = &boxes[j];
            let w = (a.x2.min(b.x2) - a.x1.max(b.x1) + 1.0).max(0.0);
            let h = (a.y2.min(b.y2) - a.y1.max(b.y1) + 1.0).max(0.0);
            let inter = w * h;
            inter / areas[i].min(areas[j]) <= threshold
        });
    }
    pick
}

/// Applies P-Net's regression the way `detect_face`'s first stage does: offsets scaled by the
/// width and height without the `+ 1` of [`bbreg`].
pub fn apply_pnet_regression(b: &Candidate) -> Candidate {
    let w = b.x2 - b.x1;
    let h = b.y2 - b.y1;
    Candidate {
        x1: b.x1 + b.reg[0] * w,
        y1: b.y1 + b.reg[1] * h,
        x2: b.x2 + b.reg[2] * w,
        y2: b.y2 + b.reg[3] * h,
        score: b.score,
        reg: [0.0; 4],
    }
}

/// `bbreg`: offsets scaled by `x2 - x1 + 1` and `y2 - y1 + 1`.
pub fn bbreg(b: &Candidate, reg: [f32; 4]) -> Candidate {
    let w = b.x2 - b.x1 + 1.0;
    let h = b.y2 - b.y1 + 1.0;
    Candidate {
        x1: b.x1 + reg[0] * w,
        y1: b.y1 + reg[1] * h,
        x2: b.x2 + reg[2] * w,
        y2: b.y2 + reg[3] * h,
        ..*b
    }
}

/// `rerec`: the square of side `max(w, h)` with the box's centre.
pub fn rerec(b: &Candidate) -> Candidate {
    let h = b.y2 - b.y1;
    let w = b.x2 - b.x1;
    let l = w.max(h);
    let x1 = b.x1 + w * 0.5 - l * 0.5;
    let y1 = b.y1 + h * 0.5 - l * 0.5;
    Candidate {
        x1,
        y1,
        x2: x1 + l,
        y2: y1 + l,
        ..*b
    }
}

/// `pad` and the crop of `detect_face`: the box truncated to integers, its top left clamped
/// to 1 and its bottom right to the image, then `imgs[..., y - 1:ey, x - 1:ex]`.
///
/// Returns the crop, or `None` where that slice
/// is empty (a box entirely outside the image). facenet-pytorch skips such crops without
/// dropping their boxes, which misaligns its scores (or raises); here they are dropped.
pub fn crop_window(b: &Candidate, width: usize, height: usize) -> Option<Window> {
    // `boxes.trunc().int()`: towards zero (boxes never come near the int32 range).
    let x = (b.x1.trunc() as i64).max(1);
    let y = (b.y1.trunc() as i64).max(1);
    let ex = (b.x2.trunc() as i64).min(width as i64);
    let ey = (b.y2.trunc() as i64).min(height as i64);
    // A Python slice `a:b` with 0 <= a and b <= len is empty unless b > a.
    if ey > y - 1 && ex > x - 1 {
        let (x0, y0) = ((x - 1) as usize, (y - 1) as usize);
        Some(Window {
            x: x0,
            y: y0,
            width: ex as usize - x0,
            height: ey as usize - y0,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Candidate {
        Candidate {
            x1,
            y1,
            x2,
            y2,
            score,
            reg: [0.0; 4],
        }
    }

    /// The normalised output of resizing a whole image.
    fn win(x: usize, y: usize, width: usize, height: usize) -> Window {
        Window {
            x,
            y,
            width,
            height,
        }
    }

    fn resize_normalised(
        pixels: &[u8],
        width: usize,
        height: usize,
        ow: usize,
        oh: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; 3 * ow * oh];
        let region = Region::whole(pixels, width, height);
        area_resize_normalised(region, ow, oh, &mut out, &mut Vec::new());
        out
    }

    /// Resized, back in the 0..255 range to compare with hand-computed means (exact for
    /// these values: multiples of 1/2 well inside the range).
    fn resize(pixels: &[u8], width: usize, height: usize, ow: usize, oh: usize) -> Vec<f32> {
        resize_normalised(pixels, width, height, ow, oh)
            .iter()
            .map(|v| v / NORM_SCALE + NORM_MEAN)
            .collect()
    }

    /// A gray image (all three channels equal) from row-major values.
    fn gray(values: &[u8]) -> Vec<u8> {
        values.iter().flat_map(|&v| [v, v, v]).collect()
    }

    #[test]
    fn area_downsample_averages_blocks() {
        // 4x2 -> 2x1: means of the two 2x2 blocks.
        let img = gray(&[0, 10, 20, 30, 40, 50, 60, 70]);
        let out = resize(&img, 4, 2, 2, 1);
        assert_eq!(&out[..2], &[25.0, 45.0]);
        assert_eq!(out[..2], out[2..4]);
    }

    #[test]
    fn area_uneven_windows_overlap() {
        // 3 -> 2 along x: windows [0, 2) and [1, 3) (floor(i n / m) .. ceil((i + 1) n / m)).
        let img = gray(&[0, 30, 90]);
        let out = resize(&img, 3, 1, 2, 1);
        assert_eq!(&out[..2], &[15.0, 60.0]);
        // 5 -> 3: windows [0, 2), [1, 4), [3, 5).
        let img = gray(&[3, 6, 9, 12, 15]);
        let out = resize(&img, 5, 1, 3, 1);
        assert_eq!(&out[..3], &[4.5, 9.0, 13.5]);
    }

    #[test]
    fn area_upsample_repeats_pixels() {
        // 2 -> 5: windows [0,1) [0,1) [0,2) [1,2) [1,2).
        let img = gray(&[10, 20]);
        let out = resize(&img, 2, 1, 5, 1);
        assert_eq!(&out[..5], &[10.0, 10.0, 15.0, 20.0, 20.0]);
    }

    #[test]
    fn area_divides_like_pytorch() {
        // Sum 5 over a 3x3 window: 5 / 3 / 3 (PyTorch's order) is one ulp below 5 / 9.
        assert_eq!(window_mean(5, 3, 3), 0.555_555_5);
        assert_ne!(window_mean(5, 3, 3), 5.0f32 / 9.0);
        assert_eq!(window_mean(45, 3, 3), 5.0);
        let mut img = vec![0u8; 9];
        img[4] = 5;
        let out = resize_normalised(&gray(&img), 3, 3, 1, 1);
        assert_eq!(out[0], (window_mean(5, 3, 3) - NORM_MEAN) * NORM_SCALE);
    }

    #[test]
    fn area_reads_a_window_of_a_larger_image() {
        // 4x3 image, region x 1..3, y 1..3 resized 1:1 is the region itself.
        let values: Vec<u8> = (0..12).map(|v| v * 10).collect();
        let img = gray(&values);
        let region = Region {
            pixels: &img,
            stride: 4,
            window: win(1, 1, 2, 2),
        };
        let mut out = vec![0.0; 12];
        area_resize_normalised(region, 2, 2, &mut out, &mut Vec::new());
        let back: Vec<f32> = out[..4]
            .iter()
            .map(|v| v / NORM_SCALE + NORM_MEAN)
            .collect();
        assert_eq!(back, vec![50.0, 60.0, 90.0, 100.0]);
    }

    #[test]
    fn pyramid_matches_facenet_pytorch() {
        // detect_face on 1666x1136 with the defaults: m = 0.6, 12 levels, the last 23x16.
        let scales = pyramid_scales(1666, 1136, 20.0, 0.709);
        assert_eq!(scales.len(), 12);
        assert_eq!(level_size(1666, 1136, scales[11]), (23, 16));
        assert_eq!(scales[0], 0.6);
        assert_eq!(level_size(1666, 1136, scales[0]), (1000, 682));
        // Too small for one level: 19 px at min face 20 gives 11.4 < 12.
        assert!(pyramid_scales(19, 100, 20.0, 0.709).is_empty());
        assert_eq!(pyramid_scales(20, 100, 20.0, 0.709).len(), 1);
    }

    #[test]
    fn bounding_boxes_from_the_probability_map() {
        // 2x3 map, one cell over the threshold at (x 2, y 1), and one exactly at it.
        let prob = [0.1, 0.2, 0.3, 0.6, 0.5, 0.9];
        let reg: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let boxes = generate_bounding_boxes(&reg, &prob, 3, 2, 0.5, 0.6);
        assert_eq!(boxes.len(), 2);
        assert_eq!(
            (boxes[0].x1, boxes[0].y1, boxes[0].x2, boxes[0].y2),
            (2.0, 6.0, 24.0, 28.0)
        );
        assert_eq!(boxes[1].reg, [5.0, 11.0, 17.0, 23.0]);
        assert_eq!(
            (boxes[1].x1, boxes[1].y1, boxes[1].x2, boxes[1].y2),
            (10.0, 6.0, 32.0, 28.0)
        );
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let boxes = [
            boxed(0.0, 0.0, 10.0, 10.0, 0.8),
            boxed(1.0, 1.0, 11.0, 11.0, 0.9), // IoU with the first 81/119 = 0.68
            boxed(20.0, 20.0, 30.0, 30.0, 0.7),
            boxed(0.0, 0.0, 10.0, 10.0, 0.9), // a tie with the second: stable, it comes second
        ];
        assert_eq!(nms(&boxes, 0.5), vec![1, 2]);
        // At 0.7 the IoU of 0.68 survives; the duplicate of the first box does not.
        assert_eq!(nms(&boxes, 0.7), vec![1, 3, 2]);
        // IoU 0.68 survives a 0.7 threshold once its suppressor is gone.
        assert_eq!(nms(&boxes[..3], 0.7), vec![1, 0, 2]);
        assert!(nms(&[], 0.5).is_empty());
        // IoU exactly at the threshold is kept (suppression needs IoU > threshold).
        let half = [
            boxed(0.0, 0.0, 3.0, 1.0, 0.9),
            boxed(1.0, 0.0, 4.0, 1.0, 0.8),
        ];
        assert_eq!(nms(&half, 0.5), vec![0, 1]);
        assert_eq!(nms(&half, 0.49), vec![0]);
    }

    #[test]
    fn nms_min_uses_the_smaller_area() {
        // A small box inside a big one: IoU is small, but intersection over the smaller is 1.
        let boxes = [
            boxed(0.0, 0.0, 99.0, 99.0, 0.9),
            boxed(10.0, 10.0, 19.0, 19.0, 0.95),
        ];
        assert_eq!(nms_min(&boxes, 0.7), vec![1]);
        assert_eq!(nms(&boxes, 0.7), vec![1, 0]);
        let apart = [
            boxed(0.0, 0.0, 9.0, 9.0, 0.9),
            boxed(10.0, 0.0, 19.0, 9.0, 0.95),
        ];
        assert_eq!(nms_min(&apart, 0.7), vec![1, 0]);
    }

    #[test]
    fn rerec_squares_around_the_centre() {
        let b = rerec(&boxed(10.0, 20.0, 30.0, 60.0, 1.0));
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (0.0, 20.0, 40.0, 60.0));
        let b = rerec(&boxed(-5.0, 0.0, 5.0, 4.0, 1.0));
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (-5.0, -3.0, 5.0, 7.0));
    }

    #[test]
    fn crop_window_clamps_at_the_border() {
        // Inside: x 10.7 -> 10 -> columns 9..20.
        assert_eq!(
            crop_window(&boxed(10.7, 5.2, 20.9, 15.0, 1.0), 100, 50),
            Some(win(9, 4, 11, 11))
        );
        // Over the top-left corner: trunc(-3.5) = -3 -> 1 -> from column 0.
        assert_eq!(
            crop_window(&boxed(-3.5, -0.5, 8.0, 8.0, 1.0), 100, 50),
            Some(win(0, 0, 8, 8))
        );
        // Over the bottom-right corner: clamped to the image.
        assert_eq!(
            crop_window(&boxed(90.0, 40.0, 130.0, 80.0, 1.0), 100, 50),
            Some(win(89, 39, 11, 11))
        );
        // Entirely outside: no crop.
        assert_eq!(
            crop_window(&boxed(120.0, 10.0, 140.0, 30.0, 1.0), 100, 50),
            None
        );
        assert_eq!(
            crop_window(&boxed(-40.0, 10.0, -20.0, 30.0, 1.0), 100, 50),
            None
        );
        // A box ending exactly at column 1 still has one column.
        assert_eq!(
            crop_window(&boxed(-10.0, 0.0, 1.0, 5.0, 1.0), 100, 50),
            Some(win(0, 0, 1, 5))
        );
    }

    #[test]
    fn regressions() {
        let b = Candidate {
            reg: [0.25, -0.5, 0.125, 0.0],
            ..boxed(0.0, 0.0, 7.0, 15.0, 1.0)
        };
        // P-Net's: scaled by x2 - x1 = 7 and y2 - y1 = 15.
        let p = apply_pnet_regression(&b);
        assert_eq!((p.x1, p.y1, p.x2, p.y2), (1.75, -7.5, 7.875, 15.0));
        // bbreg: scaled by 8 and 16.
        let r = bbreg(&b, b.reg);
        assert_eq!((r.x1, r.y1, r.x2, r.y2), (2.0, -8.0, 8.0, 15.0));
    }
}
