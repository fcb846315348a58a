//! The library's error type. Every error says which side failed (input, baseline,
//! candidate, secondary, tap) and maps to one exit code, so scripts can tell a bad flag
//! (2) from a dead target (3).

use crate::exchange::Side;
use std::path::PathBuf;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of an input file is not what was expected.
    #[error("{file}:{line}: {message}")]
    Input {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A record of a binary or structured input (a packet, a block, an entry) is not what
    /// was expected; `at` says which one, since such files have no useful line numbers.
    #[error("{}: {at}: {message}", file.display())]
    InputAt {
        /// The file.
        file: PathBuf,
        /// Where in it, e.g. `packet 17 (byte 2048)`.
        at: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An input or output file could not be opened, read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Flags that do not fit together or a value out of range.
    #[error("{0}")]
    Usage(String),
    /// A target could not be used at preflight.
    #[error("{side} target {url}: {message}")]
    Target {
        /// Which target.
        side: Side,
        /// Its URL as given.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Anything else from the runtime (binding a port, spawning a thread).
    #[error("{side}: {message}")]
    Runtime {
        /// Which part.
        side: Side,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// The process exit code DESIGN.md assigns to this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Target { .. } => 3,
            _ => 2,
        }
    }

    /// An I/O error on `file`.
    pub fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            file: file.into(),
            source,
        }
    }
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
