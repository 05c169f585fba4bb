//! Batches: shapes, normalisation, seeded augmentation; and the preview grid.

mod common;

use common::synth;
use efea_data::preview::{PreviewOptions, preview_grid};
use efea_data::synth::SynthLevel;
use efea_data::{AugmentConfig, BatchIndices, Batcher, preprocess};

#[test]
fn batches_have_the_network_shapes_and_normalisation() {
    let dataset = synth(20, SynthLevel::Easy, 0);
    let batch = Batcher::new(48).batch(&dataset, &[3, 0, 7], 0);
    assert_eq!(batch.shape(), [3, 1, 48, 48]);
    assert_eq!(batch.pixels.len(), 3 * 48 * 48);
    assert!(batch.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
    for (row, index) in [3, 0, 7].into_iter().enumerate() {
        assert_eq!(
            batch.image(row),
            &preprocess(&dataset.samples[index].image, 48)[..]
        );
    }
    let p = dataset.samples[3].image.as_raw()[0] as f32;
    assert!((batch.pixels[0] - (p / 255.0 - 0.5) / 0.5).abs() < 1e-6);

    // Another input size resizes in the same function.
    let small = Batcher::new(32).batch(&dataset, &[1], 0);
    assert_eq!(small.shape(), [1, 1, 32, 32]);
    assert_eq!(small.pixels.len(), 32 * 32);
}

#[test]
fn augmentation_is_seeded_by_epoch_and_sample() {
    let dataset = synth(14, SynthLevel::Easy, 0);
    let batcher = Batcher::new(48).with_augment(AugmentConfig::default(), 5);
    let data = |epoch, indices: &[usize]| batcher.batch(&dataset, indices, epoch).pixels;
    let a = data(0, &[2, 4]);
    assert_eq!(a, data(0, &[2, 4]));
    assert_ne!(a, data(1, &[2, 4]));
    // A sample's augmentation does not depend on its batch-mates.
    assert_eq!(a[48 * 48..], data(0, &[4])[..]);
}

#[test]
fn an_epoch_of_batches_is_reproducible_for_resume() {
    let indices: Vec<usize> = (0..100).collect();
    let epoch3: Vec<Vec<usize>> = BatchIndices::shuffled(&indices, 32, 9, 3).collect();
    let resumed: Vec<Vec<usize>> = BatchIndices::shuffled(&indices, 32, 9, 3).skip(2).collect();
    assert_eq!(epoch3[2..], resumed[..]);
    assert_eq!(BatchIndices::shuffled(&indices, 32, 9, 3).num_batches(), 4);
}

#[test]
fn the_preview_grid_has_a_row_per_class() {
    let dataset = synth(70, SynthLevel::Medium, 0);
    let opts = PreviewOptions {
        per_class: 4,
        scale: 2,
        ..PreviewOptions::default()
    };
    let grid = preview_grid(&dataset, &opts).unwrap();
    assert_eq!(grid.height(), 7 * (96 + 4) + 4);
    assert!(grid.width() > 4 * 96);
    let ink = grid.as_raw().iter().filter(|&&p| p == 20).count();
    assert!(ink > 100, "labels are drawn");
    let message = preview_grid(
        &dataset,
        &PreviewOptions {
            split: Some("Validation".into()),
            ..opts
        },
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("no split `Validation`"), "{message}");
}

#[test]
fn a_preview_grid_too_large_to_draw_is_a_one_line_error() {
    let dataset = synth(14, SynthLevel::Easy, 0);
    for (scale, per_class) in [(u32::MAX, 2), (100_000, 2), (2, usize::MAX), (2, 1 << 20)] {
        let opts = PreviewOptions {
            per_class,
            scale,
            augment: None,
            ..PreviewOptions::default()
        };
        let result = std::panic::catch_unwind(|| preview_grid(&dataset, &opts));
        let message = result
            .unwrap_or_else(|_| panic!("scale {scale}, per_class {per_class}: panicked"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("at most 16384 pixels a side") && !message.contains('\n'),
            "{message}"
        );
    }
    // A large grid within the bound is drawn.
    let opts = PreviewOptions {
        per_class: 1,
        scale: 40,
        augment: None,
        ..PreviewOptions::default()
    };
    assert_eq!(
        preview_grid(&dataset, &opts).unwrap().height(),
        7 * 1924 + 4
    );
}
