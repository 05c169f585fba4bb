//! The libraries' errors as Python exceptions. Every message is the CLI's one line: the error
//! and its causes joined by ": ", as `efea` prints them after `error: `.
#![allow(unsafe_code)] // `create_exception!` implements `PyTypeInfo` (an `unsafe` trait)

use efea_data::DataError as LibDataError;
use efea_infer::InferError;
use efea_model::WeightsError;
use efea_train::TrainError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    efea,
    EfeaError,
    PyException,
    "Base class of every error efea raises."
);
create_exception!(
    efea,
    DataError,
    EfeaError,
    "A dataset could not be read: the file, the line or entry, and what was expected."
);
create_exception!(
    efea,
    ModelError,
    EfeaError,
    "A model (run directory, checkpoint or weights file) is missing, damaged or foreign."
);
create_exception!(
    efea,
    ImageError,
    EfeaError,
    "An input is not a usable image: unreadable, empty, damaged, of an unknown format or too large."
);
create_exception!(
    efea,
    ConfigError,
    EfeaError,
    "A training setting or config file is invalid."
);
create_exception!(
    efea,
    TrainingError,
    EfeaError,
    "Training or evaluation failed: a run that cannot be resumed, a diverging loss, a file that cannot be written."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("EfeaError", py.get_type::<EfeaError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("TrainingError", py.get_type::<TrainingError>())?;
    Ok(())
}

/// The error and its causes on one line, as the CLI's `main` prints them (anyhow's `{:#}`).
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        // A `transparent` or `{source}`-formatting error already shows its cause.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

pub fn data_error(error: LibDataError) -> PyErr {
    DataError::new_err(one_line(&error))
}

pub fn model_error(error: WeightsError) -> PyErr {
    ModelError::new_err(one_line(&error))
}

pub fn infer_error(error: InferError) -> PyErr {
    match error {
        InferError::Model(weights) => model_error(weights),
        InferError::Internal(_) => EfeaError::new_err(one_line(&error)),
        other => ImageError::new_err(one_line(&other)),
    }
}

pub fn train_error(error: TrainError) -> PyErr {
    match error {
        TrainError::Data(data) => data_error(data),
        TrainError::Weights(weights) => model_error(weights),
        TrainError::Classes { .. } => DataError::new_err(one_line(&error)),
        TrainError::Config { .. } => ConfigError::new_err(one_line(&error)),
        other => TrainingError::new_err(one_line(&other)),
    }
}

/// A bad argument value, with the message a CLI flag would give.
pub fn value_error(message: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(message.into())
}
