//! Devices by name, as every front end spells them (`efea --device`, the Python package,
//! `efea-bench`): `cpu`, `wgpu[:N|:cpu]`, `cuda:N`, `tch[:cuda:N]`. A backend that this build
//! lacks is an error that says which feature to build with.

use burn::tensor::Device;

/// The names [`parse_device`] accepts, for error messages and `--help`.
pub const DEVICE_NAMES: &str = "cpu, wgpu[:N|:cpu], cuda:N or tch[:cuda:N]";

/// Why a device name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("unknown device `{name}`, expected {DEVICE_NAMES}")]
    Unknown { name: String },
    #[error("device `{name}`: expected a number for N in `{form}`")]
    BadIndex { name: String, form: &'static str },
    #[error("this efea was built without {backend}: rebuild with `--features {feature}`")]
    NotBuilt {
        backend: &'static str,
        feature: &'static str,
    },
}

/// A device by name (case-insensitive, surrounding spaces ignored).
///
/// `wgpu` is wgpu's default adapter (the most powerful one; `CUBECL_WGPU_DEFAULT_DEVICE`
/// overrides it), `wgpu:N` the N-th discrete GPU and `wgpu:cpu` a software Vulkan device such
/// as Mesa's lavapipe (its adapter type is `Cpu`). `tch` is libtorch on the CPU, `tch:cuda:N`
/// libtorch on the N-th CUDA device.
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    let name = name.trim().to_ascii_lowercase();
    let (backend, rest) = match name.split_once(':') {
        Some((backend, rest)) => (backend, Some(rest)),
        None => (name.as_str(), None),
    };
    let index = |text: Option<&str>, form: &'static str| -> Result<usize, DeviceError> {
        match text {
            None | Some("") => Ok(0),
            Some(text) => text.parse().map_err(|_| DeviceError::BadIndex {
                name: name.clone(),
                form,
            }),
        }
    };
    match backend {
        "cpu" | "flex" if rest.is_none() => Ok(Device::flex()),
        "wgpu" => match rest {
            None => wgpu(WgpuAdapter::Default),
            Some("cpu") => wgpu(WgpuAdapter::Cpu),
            Some(n) => wgpu(WgpuAdapter::Discrete(index(Some(n), "wgpu:N")?)),
        },
        "cuda" => cuda(index(rest, "cuda:N")?),
        "tch" | "libtorch" => match rest {
            None | Some("cpu") => tch(None),
            Some(cuda) => match cuda.strip_prefix("cuda") {
                Some(n) => tch(Some(index(Some(n.trim_start_matches(':')), "tch:cuda:N")?)),
                None => Err(DeviceError::Unknown { name: name.clone() }),
            },
        },
        _ => Err(DeviceError::Unknown { name: name.clone() }),
    }
}

/// Which wgpu adapter `wgpu...` names.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
enum WgpuAdapter {
    Default,
    Discrete(usize),
    Cpu,
}

#[cfg(feature = "wgpu")]
fn wgpu(adapter: WgpuAdapter) -> Result<Device, DeviceError> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(match adapter {
        WgpuAdapter::Default => DeviceKind::DefaultDevice,
        WgpuAdapter::Discrete(n) => DeviceKind::DiscreteGpu(n),
        WgpuAdapter::Cpu => DeviceKind::Cpu,
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_adapter: WgpuAdapter) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt {
        backend: "wgpu",
        feature: "wgpu",
    })
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, DeviceError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt {
        backend: "CUDA",
        feature: "cuda",
    })
}

/// `None`: libtorch on the CPU; `Some(n)`: on CUDA device n.
#[cfg(feature = "tch")]
#[allow(deprecated)] // Burn 0.22 deprecates its LibTorch backend but still ships it.
fn tch(cuda: Option<usize>) -> Result<Device, DeviceError> {
    Ok(match cuda {
        None => Device::libtorch(),
        Some(n) => Device::libtorch_cuda(n),
    })
}

#[cfg(not(feature = "tch"))]
fn tch(_cuda: Option<usize>) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt {
        backend: "libtorch",
        feature: "tch",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_has_its_names() {
        for name in ["cpu", " CPU ", "flex"] {
            assert!(parse_device(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn bad_names_say_what_was_expected() {
        for (name, expected) in [
            ("gpu", DeviceError::Unknown { name: "gpu".into() }),
            (
                "cpu:1",
                DeviceError::Unknown {
                    name: "cpu:1".into(),
                },
            ),
            (
                "tch:vulkan",
                DeviceError::Unknown {
                    name: "tch:vulkan".into(),
                },
            ),
            (
                "cuda:x",
                DeviceError::BadIndex {
                    name: "cuda:x".into(),
                    form: "cuda:N",
                },
            ),
            (
                "wgpu:-1",
                DeviceError::BadIndex {
                    name: "wgpu:-1".into(),
                    form: "wgpu:N",
                },
            ),
        ] {
            let error = parse_device(name).unwrap_err();
            assert_eq!(error, expected, "{name}");
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_not_built_names_its_feature() {
        let error = parse_device("cuda:0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "this efea was built without CUDA: rebuild with `--features cuda`"
        );
    }
}
