//! Parameter and multiply-add counts agree with the PyTorch reference's
//! (`tests/fixtures/parity/counts.json`, from `count_params_and_macs`).

mod common;

use burn::tensor::Device;
use common::{fixture_dir, tensors};
use efea_model::{EfeaNetConfig, Preset};

#[test]
fn counts_match_the_reference_for_every_preset_and_size() {
    let text = std::fs::read_to_string(fixture_dir("parity").join("counts.json")).unwrap();
    let counts: serde_json::Value = serde_json::from_str(&text).unwrap();
    for size in [48, 96] {
        for preset in Preset::ALL {
            let summary = EfeaNetConfig::preset(preset)
                .with_input_size(size)
                .summary();
            let want = &counts[size.to_string()][preset.name()];
            assert_eq!(
                summary.total_params,
                want["params"].as_u64().unwrap(),
                "{preset}@{size} params"
            );
            assert_eq!(
                summary.total_macs,
                want["macs"].as_u64().unwrap(),
                "{preset}@{size} macs"
            );
        }
    }
}

#[test]
fn summary_counts_the_parameters_the_module_has() {
    for preset in Preset::ALL {
        let config = EfeaNetConfig::preset(preset).with_width_mult(0.35);
        let model = config.init(&Device::flex());
        // Burn counts BN running statistics as tensors; PyTorch's parameters() does not.
        let params: usize = tensors(&model, None)
            .values
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, v)| v.num_elements())
            .sum();
        assert_eq!(config.summary().total_params, params as u64, "{preset}");
    }
}
