//! What rollout code can fail with: the operator's request refused (a stable code and a
//! sentence), something it names not found, or the database. The API turns these into
//! responses; nothing here knows about HTTP.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Refused: a stable machine code (`invalid_rollout`, `devices_busy`...) and a sentence.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A stored rollout that does not read back (its spec or selector JSON).
    #[error("rollout {rollout}: stored {what} does not parse: {cause}")]
    Corrupt {
        rollout: i64,
        what: &'static str,
        cause: serde_json::Error,
    },
    /// A stored artifact whose envelope or manifest does not decode (verified at upload).
    #[error("artifact {artifact}: stored manifest does not decode: {cause}")]
    CorruptArtifact {
        artifact: i64,
        cause: artifact::Error,
    },
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
}
