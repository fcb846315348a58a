//! The library's error type. Every error says which side failed (input, baseline,
//! candidate, secondary, tap, internal) and maps to one exit code, so scripts can tell a bad
//! flag (2) from a dead target (3) and both from a failure of shadowdiff itself (4), which
//! no change to the input or the targets would fix.

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
    /// Anything else from the runtime: binding a port (the tap's side), or a thread,
    /// runtime or worker of shadowdiff's own that failed ([`Side::Internal`]).
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
            Error::Runtime {
                side: Side::Internal,
                ..
            } => 4,
            _ => 2,
        }
    }

    /// A failure of shadowdiff's own machinery: `what` was being done.
    pub fn internal(what: impl std::fmt::Display, cause: impl std::fmt::Display) -> Self {
        Error::Runtime {
            side: Side::Internal,
            message: format!("{what}: {cause}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_has_its_exit_code_and_names_itself() {
        let internal = Error::internal("cannot start a worker thread", "out of threads");
        assert_eq!(internal.exit_code(), 4);
        assert_eq!(
            internal.to_string(),
            "internal: cannot start a worker thread: out of threads"
        );
        let target = Error::Target {
            side: Side::Candidate,
            url: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        };
        assert_eq!(target.exit_code(), 3);
        let tap = Error::Runtime {
            side: Side::Tap,
            message: "cannot listen on 0.0.0.0:80: permission denied".into(),
        };
        assert_eq!(tap.exit_code(), 2);
        assert_eq!(
            Error::Usage("--rate must be positive".into()).exit_code(),
            2
        );
    }
}
