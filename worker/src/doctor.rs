//! `yiflow-worker doctor`: what LibTorch the worker runs against and what it can compute on, for a
//! person setting up a machine (or a GPU node under Slurm) to read.

use std::fmt;
use std::path::{Path, PathBuf};

use tch::{Cuda, Device, Kind, Tensor};

/// What the worker finds at run time.
#[derive(Debug)]
pub struct Doctor {
    /// Where the loaded `libtorch_cpu.so` lives.
    pub libtorch: Option<PathBuf>,
    /// PyTorch's version as its installation states it (`2.11.0+cu130`).
    pub libtorch_version: Option<String>,
    /// Result of loading `libtorch_cuda.so`.
    pub cuda_library: Result<(), String>,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn: bool,
    pub threads: i32,
    /// Per device (`cpu`, `cuda:N`): whether a small matrix product gave the right answer.
    pub checks: Vec<(String, Result<(), String>)>,
}

impl Doctor {
    /// Looks at the running process; `cuda_library` is what loading `libtorch_cuda.so` gave.
    pub fn examine(cuda_library: Result<(), String>) -> Self {
        let libtorch = loaded_library("libtorch_cpu.so");
        let libtorch_version = libtorch.as_deref().and_then(installed_version);
        let cuda_devices = Cuda::device_count();
        let mut devices = vec![Device::Cpu];
        devices.extend((0..cuda_devices).map(|i| Device::Cuda(i as usize)));
        let checks = devices
            .into_iter()
            .map(|d| (device_name(d), compute_check(d)))
            .collect();
        Self {
            libtorch,
            libtorch_version,
            cuda_library,
            cuda_available: Cuda::is_available(),
            cuda_devices,
            cudnn: Cuda::cudnn_is_available(),
            threads: tch::get_num_threads(),
            checks,
        }
    }

    /// Every device computed correctly.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|(_, check)| check.is_ok())
    }
}

impl fmt::Display for Doctor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            f,
            "yiflow-worker {} (tch 0.24.0, for PyTorch 2.11.0)",
            env!("CARGO_PKG_VERSION")
        )?;
        let version = self
            .libtorch_version
            .as_deref()
            .unwrap_or("unknown version");
        match &self.libtorch {
            Some(path) => writeln!(f, "libtorch:        {version} at {}", path.display())?,
            None => writeln!(
                f,
                "libtorch:        {version} (not found in /proc/self/maps)"
            )?,
        }
        match &self.cuda_library {
            Ok(()) => writeln!(f, "libtorch_cuda:   loaded")?,
            Err(e) => writeln!(f, "libtorch_cuda:   not loaded ({e})")?,
        }
        writeln!(f, "CUDA available:  {}", yes(self.cuda_available))?;
        writeln!(f, "CUDA devices:    {}", self.cuda_devices)?;
        writeln!(f, "cuDNN available: {}", yes(self.cudnn))?;
        writeln!(f, "CPU threads:     {}", self.threads)?;
        for (device, check) in &self.checks {
            match check {
                Ok(()) => writeln!(f, "compute {device:<8} ok")?,
                Err(e) => writeln!(f, "compute {device:<8} FAILED: {e}")?,
            }
        }
        Ok(())
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_owned(),
    }
}

/// A 64x64 matrix times the identity must give the matrix back.
fn compute_check(device: Device) -> Result<(), String> {
    let a = Tensor::f_randn([64, 64], (Kind::Float, device)).map_err(|e| e.to_string())?;
    let eye = Tensor::f_eye(64, (Kind::Float, device)).map_err(|e| e.to_string())?;
    let product = a.f_matmul(&eye).map_err(|e| e.to_string())?;
    let error = (product - &a)
        .abs()
        .max()
        .f_double_value(&[])
        .map_err(|e| e.to_string())?;
    if error < 1e-3 {
        Ok(())
    } else {
        Err(format!("a x I differs from a by {error}"))
    }
}

/// The path of a shared library mapped into this process.
fn loaded_library(name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name().is_some_and(|f| f == name))
        .map(PathBuf::from)
}

/// PyTorch's version next to `lib/libtorch_cpu.so`: `version.py` of a Python wheel, or
/// `build-version` of a LibTorch archive.
fn installed_version(library: &Path) -> Option<String> {
    let root = library.parent()?.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_owned());
    }
    Some(
        std::fs::read_to_string(root.join("build-version"))
            .ok()?
            .trim()
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_wheels_and_archives() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib/libtorch_cpu.so");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        assert_eq!(installed_version(&lib), None);
        std::fs::write(dir.path().join("build-version"), "2.11.0+cpu\n").unwrap();
        assert_eq!(installed_version(&lib).as_deref(), Some("2.11.0+cpu"));
        std::fs::write(
            dir.path().join("version.py"),
            "x = 1\n__version__ = '2.11.0+cu130'\n",
        )
        .unwrap();
        assert_eq!(installed_version(&lib).as_deref(), Some("2.11.0+cu130"));
    }

    #[test]
    fn the_running_libtorch_is_found_and_computes() {
        let doctor = Doctor::examine(Err("not tried".to_owned()));
        let lib = doctor.libtorch.as_ref().expect("libtorch_cpu.so is mapped");
        assert!(lib.ends_with("lib/libtorch_cpu.so"), "{}", lib.display());
        assert!(
            doctor
                .libtorch_version
                .as_deref()
                .is_some_and(|v| v.starts_with("2.11.0"))
        );
        assert!(doctor.healthy(), "{doctor}");
        assert!(doctor.to_string().contains("compute cpu      ok"));
    }
}
