//! PyTorch weights into the Burn network: state dicts in PyTorch's names (`.pth` in torch's
//! zip format, or `.safetensors`), a torchvision `mobilenet_v2` backbone, and the key rules
//! between the two namings.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::store::{
    ApplyResult, HalfPrecisionAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Tensor};
use serde::Serialize;

use crate::EfeaNet;
use crate::backbone::BlockPlan;

/// Why weights could not be imported; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot read weights: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Mismatch { path: PathBuf, message: String },
}

/// What an import did, in the network's own parameter paths (`applied`, `missing`) and the
/// file's keys (`unused`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub applied: Vec<String>,
    /// Tensors of the network (within what was asked for) the file did not provide.
    pub missing: Vec<String>,
    /// Tensors of the file that the network has no place for.
    pub unused: Vec<String>,
}

impl ImportReport {
    /// The report of `result`, or an error for the tensors that did not fit (shape or dtype).
    pub(crate) fn checked(result: ApplyResult, path: &Path) -> Result<Self, WeightsError> {
        if let Some(first) = result.errors.first() {
            return Err(WeightsError::Mismatch {
                path: path.to_path_buf(),
                message: format!(
                    "{} tensor(s) do not fit the network; first: {first}",
                    result.errors.len()
                ),
            });
        }
        Ok(Self::from_apply(result))
    }

    fn from_apply(result: ApplyResult) -> Self {
        Self {
            applied: result.applied,
            missing: result.missing.into_iter().map(|(path, _)| path).collect(),
            unused: result.unused,
        }
    }
}

/// Regex rules `(PyTorch key pattern, Burn path)` for one inverted residual block.
///
/// `torch_prefix` / `burn_prefix` are regex-escaped prefixes (`features\.3\.` / `blocks.2.`,
/// or empty for a block on its own).
pub fn block_key_rules(
    torch_prefix: &str,
    burn_prefix: &str,
    expansion: usize,
) -> Vec<(String, String)> {
    // torchvision numbers the block's Sequential `conv`; the layers shift by one when the
    // block has no expand conv (t = 1).
    let names: &[(&str, &str)] = if expansion == 1 {
        &[
            (r"conv\.0\.0\.", "depthwise.conv."),
            (r"conv\.0\.1\.", "depthwise.bn."),
            (r"conv\.1\.", "project."),
            (r"conv\.2\.", "project_bn."),
        ]
    } else {
        &[
            (r"conv\.0\.0\.", "expand.conv."),
            (r"conv\.0\.1\.", "expand.bn."),
            (r"conv\.1\.0\.", "depthwise.conv."),
            (r"conv\.1\.1\.", "depthwise.bn."),
            (r"conv\.2\.", "project."),
            (r"conv\.3\.", "project_bn."),
        ]
    };
    let mut rules: Vec<_> = names
        .iter()
        .map(|(torch, burn)| {
            (
                format!("^{torch_prefix}{torch}"),
                format!("{burn_prefix}{burn}"),
            )
        })
        .collect();
    if !torch_prefix.is_empty() {
        // Everything else in the block (its CDSM) keeps its name under the new prefix.
        rules.push((format!("^{torch_prefix}"), burn_prefix.to_string()));
    }
    rules
}

/// Regex rules from the PyTorch reference's keys (torchvision's for the backbone) to
/// [`EfeaNet`]'s paths. MSCA and the classifier have the same names on both sides.
pub fn net_key_rules(blocks: &[BlockPlan]) -> Vec<(String, String)> {
    let mut rules = vec![
        // features.0 is torchvision's stem Conv2dNormActivation.
        (r"^features\.0\.0\.".to_string(), "stem.conv.".to_string()),
        (r"^features\.0\.1\.".to_string(), "stem.bn.".to_string()),
        // features.18 is the last 1x1 Conv2dNormActivation.
        (r"^features\.18\.0\.".to_string(), "last.conv.".to_string()),
        (r"^features\.18\.1\.".to_string(), "last.bn.".to_string()),
    ];
    for block in blocks {
        // features.N (N = 1..=17) is blocks[N - 1].
        rules.extend(block_key_rules(
            &format!(r"features\.{}\.", block.index),
            &format!("blocks.{}.", block.index - 1),
            block.expansion,
        ));
    }
    rules
}

/// Which file format a path holds, by its extension.
fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Loads a state dict with PyTorch's names into any module, through `rules`.
///
/// Shape mismatches are an error; keys absent on either side are reported, not fatal.
pub fn load_pytorch_into<M: Module>(
    module: &mut M,
    path: &Path,
    rules: &[(String, String)],
    filter: Option<fn(&str, &str) -> bool>,
) -> Result<ImportReport, WeightsError> {
    let read_error = |message: String| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(read_error("no such file".into()));
    }
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let result = if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path);
        let half = store
            .get_all_tensors()
            .map_err(|e| read_error(e.to_string()))?
            .values()
            .any(|t| t.dtype == DType::F16);
        store = if half {
            // float16 weights load as the float32 the network computes in.
            store.with_from_adapter(
                PyTorchToBurnAdapter.chain(HalfPrecisionAdapter::new().with_module("BatchNorm")),
            )
        } else {
            store.with_from_adapter(PyTorchToBurnAdapter)
        };
        let mut store = store
            .map_indices_contiguous(false)
            .allow_partial(true)
            .validate(false)
            .with_key_remapping_pairs(&rules);
        if let Some(predicate) = filter {
            store = store.with_predicate(predicate);
        }
        module
            .load_from(&mut store)
            .map_err(|e| read_error(e.to_string()))?
    } else {
        let mut store = PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .allow_partial(true)
            .validate(false)
            .with_key_remapping_pairs(&rules);
        if let Some(predicate) = filter {
            store = store.with_predicate(predicate);
        }
        module
            .load_from(&mut store)
            .map_err(|e| read_error(e.to_string()))?
    };
    ImportReport::checked(result, path)
}

/// Helper so both stores take the same `(pattern, replacement)` list.
trait KeyRemapping: Sized {
    fn with_key_remapping_pairs(self, rules: &[(&str, &str)]) -> Self;
}

impl KeyRemapping for SafetensorsStore {
    fn with_key_remapping_pairs(self, rules: &[(&str, &str)]) -> Self {
        rules.iter().fold(self, |store, (from, to)| {
            store.with_key_remapping(*from, *to)
        })
    }
}

impl KeyRemapping for PytorchStore {
    fn with_key_remapping_pairs(self, rules: &[(&str, &str)]) -> Self {
        rules.iter().fold(self, |store, (from, to)| {
            store.with_key_remapping(*from, *to)
        })
    }
}

impl EfeaNet {
    /// Loads a whole network saved by the PyTorch reference (`reference/efea_msm.py`).
    pub fn load_pytorch(
        &mut self,
        blocks: &[BlockPlan],
        path: &Path,
    ) -> Result<ImportReport, WeightsError> {
        load_pytorch_into(self, path, &net_key_rules(blocks), None)
    }

    /// Loads a torchvision `mobilenet_v2` state dict into the backbone (`features.*`).
    ///
    /// CDSM, MSCA and the classifier keep their initialisation. For a 1-channel network the
    /// RGB stem kernel is summed over its input channels, which gives the same response to a
    /// gray image replicated on R, G and B.
    pub fn load_torchvision_backbone(
        &mut self,
        blocks: &[BlockPlan],
        path: &Path,
    ) -> Result<ImportReport, WeightsError> {
        let gray = self.stem.conv.weight.dims()[1] == 1;
        let filter: fn(&str, &str) -> bool = if gray {
            |path, _| is_backbone_path(path) && path != STEM_WEIGHT
        } else {
            |path, _| is_backbone_path(path)
        };
        let mut report = load_pytorch_into(self, path, &net_key_rules(blocks), Some(filter))?;
        if gray {
            self.load_gray_stem(blocks, path)?;
            report.applied.push(STEM_WEIGHT.to_string());
        }
        report.missing.retain(|p| is_backbone_path(p));
        report.missing.sort();
        Ok(report)
    }

    fn load_gray_stem(&mut self, blocks: &[BlockPlan], path: &Path) -> Result<(), WeightsError> {
        let read_error = |message: String| WeightsError::Read {
            path: path.to_path_buf(),
            message,
        };
        let mut store = PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .with_key_remapping_pairs(
                &net_key_rules(blocks)
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect::<Vec<_>>(),
            );
        let tensor = store
            .get_tensor(STEM_WEIGHT)
            .map_err(|e| read_error(e.to_string()))?
            .ok_or_else(|| read_error("no `features.0.0.weight` (stem kernel)".into()))?;
        let data = burn::store::bridge::to_data(tensor).map_err(|e| read_error(e.to_string()))?;
        let device = self.stem.conv.weight.device();
        let rgb: Tensor<4> = Tensor::from_data(data.convert::<f32>(), &device);
        let expected = self.stem.conv.weight.dims();
        let [out, _, kh, kw] = rgb.dims();
        if [out, 1, kh, kw] != expected {
            return Err(WeightsError::Mismatch {
                path: path.to_path_buf(),
                message: format!(
                    "`features.0.0.weight` has shape {:?}, the stem needs {:?} (summed over RGB)",
                    rgb.dims(),
                    expected
                ),
            });
        }
        let id = self.stem.conv.weight.id;
        self.stem.conv.weight = Param::initialized(id, rgb.sum_dim(1));
        Ok(())
    }
}

/// The stem kernel's path in [`EfeaNet`].
const STEM_WEIGHT: &str = "stem.conv.weight";

/// Backbone tensors are those torchvision has: not CDSM, MSCA or the classifier.
fn is_backbone_path(path: &str) -> bool {
    (path.starts_with("stem.") || path.starts_with("blocks.") || path.starts_with("last."))
        && !path.contains(".cdsm.")
}
