//! The scaler crate's error type: one enum, each variant naming what was wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong in the scaler crate (config, traces, simulator output).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A trace name that is neither one of the built-in traces nor a `.csv` file.
    #[error("unknown trace {name:?}: expected one of {known} or a path ending in .csv")]
    UnknownTrace {
        /// The name that was given.
        name: String,
        /// The built-in names, comma separated.
        known: &'static str,
    },
    /// A policy name that the simulator does not know.
    #[error("unknown policy {name:?}: expected `all` or a comma-separated list of {known}")]
    UnknownPolicy {
        /// The name that was given.
        name: String,
        /// The known policy ids, comma separated.
        known: String,
    },
    /// A CSV trace line that could not be read.
    #[error("{path}:{line}: {reason} (expected `t_seconds,connections`)")]
    TraceLine {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },
    /// A trace that is well-formed line by line but unusable as a whole.
    #[error("trace {name}: {reason}")]
    InvalidTrace {
        /// The trace name or path.
        name: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A config or CLI value outside its allowed range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The field or flag, e.g. `--boot-delay` or `target_occupancy`.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the JSON summary failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing a plot failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The SVG being written.
        path: PathBuf,
        /// The plotting backend's message.
        reason: String,
    },
}

impl Error {
    /// A short, static label for metrics and logs (bounded cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::UnknownTrace { .. } => "unknown_trace",
            Error::UnknownPolicy { .. } => "unknown_policy",
            Error::TraceLine { .. } => "trace_line",
            Error::InvalidTrace { .. } => "invalid_trace",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::Io { .. } => "io",
            Error::Json(_) => "json",
            Error::Plot { .. } => "plot",
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
