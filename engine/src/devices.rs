//! The pool of GPUs stages take whole devices from (`gpus N`), built from the recipe's `devices`.

use std::process::Command;

use yiflow_dsl::Devices;

/// Free and total devices; a stage holds its devices until it ends.
#[derive(Debug, Clone)]
pub struct DevicePool {
    free: Vec<String>,
    total: usize,
    /// With `devices auto` and no GPU found, GPU stages run on CPU (with a warning) instead of waiting.
    cpu_fallback: bool,
}

/// A device list that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {device} is not present (found: {found})")]
    Missing { device: String, found: String },
    #[error("stage `{stage}` asks for {wanted} GPUs but the recipe's device pool has {total}")]
    TooFew {
        stage: String,
        wanted: u32,
        total: usize,
    },
}

/// CUDA devices on this machine, as `cuda:N` (physical indices), found through `nvidia-smi -L`
/// (no CUDA library is loaded) and narrowed by `CUDA_VISIBLE_DEVICES` when that is set.
pub fn detect_cuda() -> Vec<String> {
    let Ok(out) = Command::new("nvidia-smi").arg("-L").output() else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    let found: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("GPU ")?
                .split(':')
                .next()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .map(|i| format!("cuda:{i}"))
        .collect();
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(visible) if !visible.trim().is_empty() => visible
            .split(',')
            .map(|v| format!("cuda:{}", v.trim()))
            .filter(|d| found.contains(d))
            .collect(),
        _ => found,
    }
}

impl DevicePool {
    /// The pool for a recipe's `devices` setting, checked against what this machine has.
    pub fn new(devices: &Devices) -> Result<Self, DeviceError> {
        let (free, cpu_fallback) = match devices {
            Devices::Cpu => (Vec::new(), true),
            Devices::Auto => {
                let found = detect_cuda();
                let fallback = found.is_empty();
                (found, fallback)
            }
            Devices::List(list) => {
                let found = detect_cuda();
                for d in list {
                    if !found.contains(&d.value) {
                        return Err(DeviceError::Missing {
                            device: d.value.clone(),
                            found: if found.is_empty() {
                                "no CUDA device".into()
                            } else {
                                found.join(", ")
                            },
                        });
                    }
                }
                (list.iter().map(|d| d.value.clone()).collect(), false)
            }
        };
        Ok(Self {
            total: free.len(),
            free,
            cpu_fallback,
        })
    }

    /// A pool of fake devices, for tests and for clusters that assign devices themselves.
    pub fn with_devices(devices: Vec<String>) -> Self {
        Self {
            total: devices.len(),
            free: devices,
            cpu_fallback: false,
        }
    }

    /// True when GPU stages run on CPU because no GPU was found.
    pub fn cpu_fallback(&self) -> bool {
        self.cpu_fallback
    }

    /// Checks that a stage asking for `wanted` devices can ever run.
    pub fn check(&self, stage: &str, wanted: u32) -> Result<(), DeviceError> {
        if wanted as usize > self.total && !self.cpu_fallback {
            return Err(DeviceError::TooFew {
                stage: stage.to_owned(),
                wanted,
                total: self.total,
            });
        }
        Ok(())
    }

    /// Takes `wanted` devices if free (an empty list on CPU fallback).
    pub fn take(&mut self, wanted: u32) -> Option<Vec<String>> {
        if wanted == 0 || self.cpu_fallback {
            return Some(Vec::new());
        }
        let wanted = wanted as usize;
        (self.free.len() >= wanted).then(|| self.free.drain(..wanted).collect())
    }

    pub fn give_back(&mut self, devices: Vec<String>) {
        self.free.extend(devices);
        self.free.sort();
    }
}
