//! Batches: shapes, normalisation, targets, soft targets, seeded augmentation; and the preview
//! grid.

mod common;

use burn::tensor::Device;
use common::synth;
use efea_data::preview::{PreviewOptions, preview_grid};
use efea_data::synth::SynthLevel;
use efea_data::{AugmentConfig, BatchIndices, Batcher, preprocess};

#[test]
fn batches_have_the_network_shapes_and_normalisation() {
    let dataset = synth(20, SynthLevel::Easy, 0);
    let device = Device::default();
    let batch = Batcher::new(48).batch(&dataset, &[3, 0, 7], 0, &device);
    assert_eq!(batch.images.dims(), [3, 1, 48, 48]);
    assert_eq!(batch.targets.dims(), [3]);
    assert!(batch.soft_targets.is_none());
    let targets: Vec<i64> = batch
        .targets
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    assert_eq!(targets, [3, 0, 0]);
    let values: Vec<f32> = batch.images.into_data().try_to_vec().unwrap();
    assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert_eq!(
        values[..48 * 48],
        preprocess(&dataset.samples[3].image, 48)[..]
    );
    let p = dataset.samples[3].image.as_raw()[0] as f32;
    assert!((values[0] - (p / 255.0 - 0.5) / 0.5).abs() < 1e-6);

    // Another input size resizes in the same function.
    let small = Batcher::new(32).batch(&dataset, &[1], 0, &device);
    assert_eq!(small.images.dims(), [1, 1, 32, 32]);
}

#[test]
fn soft_targets_come_with_vote_distributions() {
    let mut dataset = synth(14, SynthLevel::Easy, 0);
    for sample in &mut dataset.samples {
        let mut soft = vec![0.0; 7];
        soft[sample.label] = 0.75;
        soft[(sample.label + 1) % 7] = 0.25;
        sample.soft_label = Some(soft);
    }
    let batch = Batcher::new(48).batch(&dataset, &[0, 1], 0, &Device::default());
    let soft = batch.soft_targets.expect("every sample has votes");
    assert_eq!(soft.dims(), [2, 7]);
    let values: Vec<f32> = soft.into_data().try_to_vec().unwrap();
    assert_eq!(values[..3], [0.75, 0.25, 0.0]);
}

#[test]
fn augmentation_is_seeded_by_epoch_and_sample() {
    let dataset = synth(14, SynthLevel::Easy, 0);
    let device = Device::default();
    let batcher = Batcher::new(48).with_augment(AugmentConfig::default(), 5);
    let data = |epoch, indices: &[usize]| -> Vec<f32> {
        batcher
            .batch(&dataset, indices, epoch, &device)
            .images
            .into_data()
            .try_to_vec()
            .unwrap()
    };
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
