//! `efea._efea`: the native half of the Python package `efea`, a thin PyO3 layer over the
//! library crates (efea-infer's `Predictor`, efea-data's loaders, efea-train's `train`,
//! `resume` and `evaluate_run`). It holds no logic of its own: it converts arguments, releases
//! the GIL around the work, checks for Ctrl-C between batches and turns the libraries' errors
//! into Python exceptions with the CLI's one-line messages. The typed, documented API that
//! people call is the Python half, `python/efea/__init__.py`.
//!
//! Results cross the boundary as JSON text written by the libraries' own `Serialize`
//! implementations (the ones behind `efea predict --format json` and `report.json`), and
//! pixels as `bytes`: the Python half makes dictionaries and NumPy arrays of them, so the
//! values are exactly the CLI's.

// `unsafe_code` is `deny` for this crate (Cargo.toml), not the workspace's `forbid`: PyO3's
// macros (`#[pymodule]`, `#[pyclass]`, `create_exception!`) expand to `unsafe impl`s and FFI
// trampolines in this crate, which `forbid` rejects and no inner `allow` can lift. `deny` keeps
// hand-written `unsafe` out; the modules that invoke the macros allow what they generate, and
// nothing else here is unsafe.

mod data;
mod detector;
mod errors;
mod training;

use pyo3::prelude::*;

/// The native module; `efea/__init__.py` re-exports what users call.
#[allow(unsafe_code)] // PyO3's module trampoline
#[pymodule]
fn _efea(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<detector::Detector>()?;
    m.add_function(wrap_pyfunction!(data::load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(data::synth, m)?)?;
    m.add_function(wrap_pyfunction!(training::train, m)?)?;
    m.add_function(wrap_pyfunction!(training::evaluate, m)?)?;
    Ok(())
}
