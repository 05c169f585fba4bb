//! `--device` and `--devices`, shared by every command that runs a network; the names are
//! parsed by [`efea_model::device`].

use burn::tensor::Device;
use clap::Args;

/// `--device` and `--devices`.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu, wgpu (the default adapter), wgpu:N (the N-th discrete GPU), wgpu:cpu (a software
    /// Vulkan such as lavapipe), cuda:N or tch[:cuda:N] (GPU backends need their feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Data-parallel training over several devices, e.g. `cuda:0,cuda:1`.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    devices: Vec<String>,
    /// Only the per-epoch summary lines, no progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl DeviceArgs {
    /// The devices as the user named them.
    pub fn names(&self) -> Vec<String> {
        let names = if self.devices.is_empty() {
            std::slice::from_ref(&self.device)
        } else {
            &self.devices
        };
        names
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect()
    }

    pub fn devices(&self) -> anyhow::Result<Vec<Device>> {
        if self.devices.is_empty() {
            return Ok(vec![parse_device(&self.device)?]);
        }
        self.devices.iter().map(|d| parse_device(d)).collect()
    }
}

/// A device by name (`efea_model::device::parse_device`), as an error `main` prints.
pub fn parse_device(name: &str) -> anyhow::Result<Device> {
    Ok(efea_model::device::parse_device(name)?)
}

/// Before training on `devices`: on one device the main thread trains, so it computes as one
/// of rayon's threads; with several it waits on theirs (see
/// `efea_model::kernels::join_global_pool`).
pub fn compute_on_main_thread(devices: &[Device]) {
    if devices.len() == 1 {
        efea_model::kernels::join_global_pool();
    }
}
