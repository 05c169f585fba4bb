//! A torchvision `mobilenet_v2` state dict (written by `reference/make_fixtures.py` from a
//! randomly initialised torchvision model, width 0.35) loads into the backbone.

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::store::{ModuleStore, PytorchStore};
use burn::tensor::{Device, TensorData};
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

/// The tensors of the `.pth` as the file has them, by torchvision key.
fn torchvision_tensors() -> BTreeMap<String, TensorData> {
    let mut store = PytorchStore::from_file(pth());
    store
        .get_all_tensors()
        .expect("the fixture reads")
        .iter()
        .map(|(key, tensor)| {
            let data = burn::store::bridge::to_data(tensor).expect("fixture tensor decodes");
            (key.clone(), data)
        })
        .collect()
}

fn f32s(data: &TensorData) -> Vec<f32> {
    data.clone()
        .convert::<f32>()
        .try_to_vec()
        .expect("float data")
}

/// Where a torchvision `mobilenet_v2` key belongs in the network, written out here from
/// torchvision's layout (not from the importer's rules, which this test checks); `None` for
/// the classifier and the BN step counters.
fn place_in_network(key: &str) -> Option<String> {
    let (module, param) = key.rsplit_once('.')?;
    let bn_param = match param {
        "weight" => "gamma",
        "bias" => "beta",
        "running_mean" | "running_var" => param,
        _ => return None,
    };
    let conv = |path: &str| format!("{path}.{param}");
    let bn = |path: &str| format!("{path}.{bn_param}");
    let parts: Vec<&str> = module.split('.').collect();
    match parts.as_slice() {
        ["features", "0", "0"] => Some(conv("stem.conv")),
        ["features", "0", "1"] => Some(bn("stem.bn")),
        ["features", "18", "0"] => Some(conv("last.conv")),
        ["features", "18", "1"] => Some(bn("last.bn")),
        ["features", n, "conv", layer @ ..] => {
            let block = format!("blocks.{}", n.parse::<usize>().ok()? - 1);
            // features.1 (t = 1) has no expansion: its layers come one place earlier.
            let layers: &[(&[&str], &str, bool)] = if *n == "1" {
                &[
                    (&["0", "0"], "depthwise.conv", false),
                    (&["0", "1"], "depthwise.bn", true),
                    (&["1"], "project", false),
                    (&["2"], "project_bn", true),
                ]
            } else {
                &[
                    (&["0", "0"], "expand.conv", false),
                    (&["0", "1"], "expand.bn", true),
                    (&["1", "0"], "depthwise.conv", false),
                    (&["1", "1"], "depthwise.bn", true),
                    (&["2"], "project", false),
                    (&["3"], "project_bn", true),
                ]
            };
            let &(_, name, is_bn) = layers.iter().find(|(at, _, _)| *at == layer)?;
            let path = format!("{block}.{name}");
            Some(if is_bn { bn(&path) } else { conv(&path) })
        }
        _ => None,
    }
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
    // Element for element: every backbone tensor of the network is the file's tensor of the
    // same place (a transposed or misplaced kernel has the right sum but fails here).
    let file = torchvision_tensors();
    let mut compared = 0;
    for (key, value) in &file {
        let Some(path) = place_in_network(key) else {
            continue;
        };
        let got = after
            .get(&path)
            .unwrap_or_else(|| panic!("`{key}` should be at `{path}`, which the network lacks"));
        if path == "stem.conv.weight" {
            continue; // summed over the RGB channels, checked below
        }
        assert_eq!(got.shape(), value.shape(), "{key} -> {path}: shape");
        let (got, want) = (f32s(got), f32s(value));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "{key} -> {path}: element {i} is {g}, the file has {w}"
            );
        }
        compared += 1;
    }
    assert_eq!(
        compared,
        52 * 5 - 1,
        "every applied tensor but the stem kernel compared"
    );

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
    // An RGB stem is the file's kernel itself, element for element.
    let file = &torchvision_tensors()["features.0.0.weight"];
    assert_eq!(stem.shape(), file.shape());
    assert_eq!(f32s(&stem), f32s(file));
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
