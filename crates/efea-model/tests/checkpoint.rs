//! Checkpoints round-trip exactly; damaged, foreign and mismatched files give one-line errors
//! that name the file, never a panic.

mod common;

use std::fs;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use common::tensors;
use efea_model::checkpoint::{CONFIG_FILE, ModelSpec, load_model, load_module, save_module};
use efea_model::{EfeaNetConfig, Preset};

fn small() -> EfeaNetConfig {
    EfeaNetConfig::preset(Preset::Full).with_width_mult(0.35)
}

fn write_run(dir: &std::path::Path, config: &EfeaNetConfig) -> Tensor<2> {
    let device = Device::flex();
    let model = config.init(&device);
    save_module(&model, &dir.join("best.bpk")).unwrap();
    let classes = (0..config.num_classes)
        .map(|i| format!("class{i}"))
        .collect();
    let spec = ModelSpec::new(config.clone(), classes);
    fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&spec).unwrap()).unwrap();
    let x = Tensor::random([2, 1, 48, 48], Distribution::Default, &device);
    model.valid().forward(x)
}

#[test]
fn a_run_directory_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = small();
    let device = Device::flex();
    let model = config.init(&device);
    save_module(&model, &dir.path().join("best.bpk")).unwrap();
    let spec = ModelSpec::new(config.clone(), (0..7).map(|i| i.to_string()).collect());
    fs::write(
        dir.path().join(CONFIG_FILE),
        serde_json::to_string(&spec).unwrap(),
    )
    .unwrap();

    let (loaded_spec, loaded) = load_model(dir.path(), &device).unwrap();
    assert_eq!(loaded_spec, spec);
    assert_eq!(tensors(&model, None).values, tensors(&loaded, None).values);
    // A checkpoint file given directly finds config.json beside it.
    assert!(load_model(&dir.path().join("best.bpk"), &device).is_ok());
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_truncated_checkpoint_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &small());
    let path = dir.path().join("best.bpk");
    let bytes = fs::read(&path).unwrap();
    for keep in [0, 7, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&path, &bytes[..keep]).unwrap();
        let err = load_model(dir.path(), &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(err.contains("best.bpk"), "truncated to {keep}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn a_foreign_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &small());
    fs::write(
        dir.path().join("best.bpk"),
        b"PK\x03\x04 definitely not burnpack",
    )
    .unwrap();
    let err = load_model(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("best.bpk"), "{err}");
}

#[test]
fn another_architecture_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &small());
    let path = dir.path().join("best.bpk");
    for other in [
        EfeaNetConfig::preset(Preset::Plain).with_width_mult(0.35),
        small().with_width_mult(0.5),
        small().with_num_classes(8),
    ] {
        let mut model = other.init(&Device::flex());
        let err = load_module(&mut model, &path).unwrap_err().to_string();
        assert!(
            err.contains("best.bpk") && err.contains("another architecture"),
            "{err}"
        );
    }
}

#[test]
fn a_bad_config_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &small());
    fs::write(dir.path().join(CONFIG_FILE), "{\"model\": 3}").unwrap();
    let err = load_model(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains(CONFIG_FILE), "{err}");
    fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
    let err = load_model(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}
