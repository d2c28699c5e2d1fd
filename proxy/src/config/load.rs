//! Reading a config file: parse, then validate, with errors that name the file, the field (and
//! line, where the YAML parser gives it) and what was expected.
//!
//! A config may come from anyone who can edit a ConfigMap, so reading one is bounded: at most
//! [`MAX_CONFIG_BYTES`], and the YAML parser runs under a [`serde_saphyr::Budget`] sized for a
//! config file (a few thousand nodes, a thousand aliases, no includes) rather than its general
//! defaults, so alias bombs ("billion laughs") and deep nesting fail fast in little memory.

use std::path::Path;

use serde_saphyr::options::AliasLimits;
use serde_saphyr::{Budget, Options};

use super::Config;

/// Largest config file accepted (a full config is a few KiB).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not match the schema (unknown field, wrong type, bad value).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's error, with line and column.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: the config is larger than the {MAX_CONFIG_BYTES} bytes accepted ({len} read)")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        len: usize,
    },
    /// A value is out of range or fields disagree.
    #[error("invalid config: field `{field}`: expected {expected}")]
    Invalid {
        /// The field, as written in YAML.
        field: &'static str,
        /// What it should have been.
        expected: String,
    },
    /// As [`Error::Invalid`], in a named file.
    #[error("{path}: {inner}")]
    InFile {
        /// The file.
        path: String,
        /// The validation error.
        #[source]
        inner: Box<Error>,
    },
}

impl Error {
    /// A bounded label for `tidegate_config_reloads_total{result}`-style metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read_error",
            Self::Parse { .. } | Self::TooLarge { .. } => "parse_error",
            Self::Invalid { .. } | Self::InFile { .. } => "invalid",
        }
    }
}

/// The parser's limits for a config file.
fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_events = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = MAX_CONFIG_BYTES;
    budget.max_depth = 32;
    budget.max_inclusion_depth = 0;
    budget.max_documents = 2;
    budget.max_nodes = 50_000;
    budget.max_total_scalar_bytes = MAX_CONFIG_BYTES;
    budget.max_merge_keys = 100;
    let mut aliases = AliasLimits::default();
    aliases.max_total_replayed_events = 100_000;
    aliases.max_replay_stack_depth = 16;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits = aliases;
    options
}

/// Parses and validates YAML text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, Error> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge {
            path: origin.to_owned(),
            len: text.len(),
        });
    }
    let config: Config = if text.trim().is_empty() {
        Config::default()
    } else {
        serde_saphyr::from_str_with_options(text, options()).map_err(|source| Error::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?
    };
    config.validate().map_err(|inner| Error::InFile {
        path: origin.to_owned(),
        inner: Box::new(inner),
    })?;
    Ok(config)
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, Error> {
    use std::io::Read as _;
    let origin = path.display().to_string();
    let read = |source| Error::Read {
        path: origin.clone(),
        source,
    };
    let mut bytes = Vec::new();
    // One byte over the limit is enough to refuse it; a huge file is never read whole.
    let limit = MAX_CONFIG_BYTES as u64 + 1;
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(read)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge {
            path: origin,
            len: bytes.len(),
        });
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    parse(&text, &origin)
}
