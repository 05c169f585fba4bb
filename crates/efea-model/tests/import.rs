//! A torchvision `mobilenet_v2` state dict (written by `reference/make_fixtures.py` from a
//! randomly initialised torchvision model, width 0.35) loads into the backbone.

mod common;

use burn::module::Module;
use burn::tensor::Device;
use common::{fixture_dir, tensors};
use efea_model::{EfeaNetConfig, Preset, WeightsError};

fn pth() -> std::path::PathBuf {
    fixture_dir("import").join("torchvision_mobilenet_v2_w035.pth")
}

fn expected() -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixture_dir("import").join("torchvision_mobilenet_v2_w035.json"))
            .expect("fixture json");
    serde_json::from_str(&text).expect("valid json")
}

fn sum(data: &burn::tensor::TensorData) -> f64 {
    data.clone()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
        .iter()
        .map(|&x| x as f64)
        .sum()
}

#[test]
fn torchvision_backbone_loads_into_a_gray_full_network() {
    let config = EfeaNetConfig::new().with_width_mult(0.35);
    let device = Device::flex();
    let mut model = config.init(&device);
    let before = tensors(&model, None).values;
    let report = model
        .load_torchvision_backbone(&config.blocks(), &pth())
        .expect("loads");

    assert!(
        report.missing.is_empty(),
        "missing backbone tensors: {:?}",
        report.missing
    );
    // Every torchvision tensor but the classifier and the BN step counters has a place.
    let unexpected: Vec<_> = report
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked") && !k.starts_with("classifier."))
        .collect();
    assert!(
        unexpected.is_empty(),
        "torchvision keys without a place: {unexpected:?}"
    );
    // 52 convs/BNs x params: conv weight + BN (weight, bias, mean, var) over 52 units.
    assert_eq!(
        report.applied.len(),
        52 * 5,
        "applied: {}",
        report.applied.len()
    );

    let after = tensors(&model, None).values;
    let json = expected();
    let depthwise = &json["tensors"]["features.5.conv.1.0.weight"]["sum"];
    let got = sum(&after["blocks.4.depthwise.conv.weight"]);
    assert!(
        (got - depthwise.as_f64().unwrap()).abs() < 1e-4,
        "depthwise sum {got}"
    );
    let running_var = json["tensors"]["features.18.1.running_var"]["sum"]
        .as_f64()
        .unwrap();
    assert!((sum(&after["last.bn.running_var"]) - running_var).abs() < 1e-3);

    // The gray stem is the RGB kernel summed over its input channels.
    let stem: Vec<f32> = after["stem.conv.weight"].clone().try_to_vec().unwrap();
    let want: Vec<f64> =
        serde_json::from_value(json["stem_weight_sum_over_in_channels"]["values"].clone()).unwrap();
    assert_eq!(stem.len(), want.len());
    for (g, w) in stem.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-5, "stem {g} vs {w}");
    }

    // CDSM, MSCA and the classifier keep their initialisation.
    for (path, value) in &before {
        let keeps =
            path.contains(".cdsm.") || path.starts_with("msca.") || path.starts_with("classifier.");
        if keeps {
            assert_eq!(value, &after[path], "{path} changed");
        }
    }
}

#[test]
fn torchvision_backbone_loads_into_an_rgb_plain_network() {
    let config = EfeaNetConfig::preset(Preset::Plain)
        .with_width_mult(0.35)
        .with_in_channels(3);
    let mut model = config.init(&Device::flex());
    let report = model
        .load_torchvision_backbone(&config.blocks(), &pth())
        .expect("loads");
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    let stem = tensors(&model, None).values["stem.conv.weight"].clone();
    let want = expected()["tensors"]["features.0.0.weight"]["sum"]
        .as_f64()
        .unwrap();
    assert!((sum(&stem) - want).abs() < 1e-4);
}

#[test]
fn a_backbone_of_another_width_is_an_error_naming_the_file() {
    let config = EfeaNetConfig::new();
    let mut model = config.init(&Device::flex());
    let err = model
        .load_torchvision_backbone(&config.blocks(), &pth())
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, WeightsError::Mismatch { .. }), "{message}");
    assert!(
        message.contains("torchvision_mobilenet_v2_w035.pth"),
        "{message}"
    );
}

#[test]
fn a_missing_or_foreign_file_is_an_error() {
    let config = EfeaNetConfig::new().with_width_mult(0.35);
    let mut model = config.init(&Device::flex());
    let missing =
        model.load_torchvision_backbone(&config.blocks(), std::path::Path::new("/nonexistent.pth"));
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("/nonexistent.pth")
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a torch file").unwrap();
    let err = model
        .load_torchvision_backbone(&config.blocks(), &junk)
        .unwrap_err();
    assert!(err.to_string().contains("junk.pth"), "{err}");
    // The model is still usable after a failed import.
    let _ = model.valid();
}
