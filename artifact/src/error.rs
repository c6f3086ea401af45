//! The one error type of the artifact format: small, `Copy`, no strings, one variant per cause.

use core::fmt;

/// Why bytes were refused. Every decoder and verifier of this crate returns one of these;
/// none of them panics. `code()` is a stable machine-readable name for logs and HTTP bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the structure did.
    Truncated,
    /// Bytes follow the end of the structure.
    TrailingBytes,
    /// The bytes are not the CBOR structure expected (wrong type, bad UTF-8, indefinite length).
    Malformed,
    /// The bundle does not start with the bundle magic.
    BadMagic,
    /// A format version this code does not understand.
    UnsupportedVersion,
    /// Header flags this code does not understand.
    UnsupportedFlags,
    /// The envelope holds another kind of document (a root where a manifest was expected...).
    WrongDocument,
    /// Map keys are not strictly ascending: a duplicate key or a non-deterministic encoding.
    KeyOrder,
    /// An unknown field marked critical (negative key): this version must not ignore it.
    UnknownCriticalField,
    /// A required field is absent.
    MissingField,
    /// A declared size or length is beyond the format's bound.
    TooLarge,
    /// A list holds more entries than the format's bound.
    TooMany,
    /// A name is empty, too long, or uses characters outside `[A-Za-z0-9._-]`.
    InvalidName,
    /// A field holds a value outside its range (threshold 0, accuracy above 100 %...).
    InvalidValue,
    /// A public key is not a valid Ed25519 point, or is a weak key.
    InvalidPublicKey,
    /// A root lists the same key twice.
    DuplicateKey,
    /// The components do not form a valid release (a model without its validation set...).
    InconsistentComponents,
    /// A signature from a trusted key does not verify.
    BadSignature,
    /// One key signed twice; its signatures count once, and the threshold was missed.
    DuplicateSignature,
    /// Signatures come from keys the trust root does not list.
    UnknownKey,
    /// Fewer valid signatures from distinct trusted keys than the threshold.
    BelowThreshold,
    /// A new root's version is not exactly the trusted root's version plus one.
    RootVersion,
    /// A new root is not signed by a threshold of the trusted root's keys.
    RotationOldThreshold,
    /// A new root is not signed by a threshold of its own root keys.
    RotationNewThreshold,
    /// The artifact is not built for this board.
    WrongBoard,
    /// The security counter is below the one the device already trusts.
    SecurityCounter,
    /// The model needs a runtime ABI the firmware does not provide.
    AbiMismatch,
    /// The payloads are longer or shorter than the manifest declares.
    SizeMismatch,
    /// A payload's SHA-256 differs from the manifest.
    DigestMismatch,
}

impl Error {
    /// Stable snake_case name, for machine-readable error bodies and scripts.
    pub const fn code(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::TrailingBytes => "trailing_bytes",
            Error::Malformed => "malformed",
            Error::BadMagic => "bad_magic",
            Error::UnsupportedVersion => "unsupported_version",
            Error::UnsupportedFlags => "unsupported_flags",
            Error::WrongDocument => "wrong_document",
            Error::KeyOrder => "key_order",
            Error::UnknownCriticalField => "unknown_critical_field",
            Error::MissingField => "missing_field",
            Error::TooLarge => "too_large",
            Error::TooMany => "too_many",
            Error::InvalidName => "invalid_name",
            Error::InvalidValue => "invalid_value",
            Error::InvalidPublicKey => "invalid_public_key",
            Error::DuplicateKey => "duplicate_key",
            Error::InconsistentComponents => "inconsistent_components",
            Error::BadSignature => "bad_signature",
            Error::DuplicateSignature => "duplicate_signature",
            Error::UnknownKey => "unknown_key",
            Error::BelowThreshold => "below_threshold",
            Error::RootVersion => "root_version",
            Error::RotationOldThreshold => "rotation_old_threshold",
            Error::RotationNewThreshold => "rotation_new_threshold",
            Error::WrongBoard => "wrong_board",
            Error::SecurityCounter => "security_counter",
            Error::AbiMismatch => "abi_mismatch",
            Error::SizeMismatch => "size_mismatch",
            Error::DigestMismatch => "digest_mismatch",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Error::Truncated => "input ends before the structure does",
            Error::TrailingBytes => "unexpected bytes after the end",
            Error::Malformed => "malformed CBOR structure",
            Error::BadMagic => "not a bundle (bad magic)",
            Error::UnsupportedVersion => "unsupported format version",
            Error::UnsupportedFlags => "unsupported header flags",
            Error::WrongDocument => "wrong document type in envelope",
            Error::KeyOrder => "map keys not strictly ascending (duplicate or non-deterministic)",
            Error::UnknownCriticalField => "unknown critical field",
            Error::MissingField => "required field missing",
            Error::TooLarge => "declared size beyond bound",
            Error::TooMany => "list longer than bound",
            Error::InvalidName => "invalid name",
            Error::InvalidValue => "field value out of range",
            Error::InvalidPublicKey => "invalid Ed25519 public key",
            Error::DuplicateKey => "root lists one key twice",
            Error::InconsistentComponents => "components do not form a valid release",
            Error::BadSignature => "signature by a trusted key does not verify",
            Error::DuplicateSignature => "duplicate signatures by one key (counted once)",
            Error::UnknownKey => "signed by a key the trust root does not list",
            Error::BelowThreshold => "fewer valid signatures than the threshold",
            Error::RootVersion => "new root version is not the trusted version plus one",
            Error::RotationOldThreshold => {
                "new root not signed by a threshold of the old root keys"
            }
            Error::RotationNewThreshold => {
                "new root not signed by a threshold of its own root keys"
            }
            Error::WrongBoard => "artifact not built for this board",
            Error::SecurityCounter => "security counter below the trusted one",
            Error::AbiMismatch => "model needs a runtime ABI the firmware does not provide",
            Error::SizeMismatch => "payload size differs from the manifest",
            Error::DigestMismatch => "payload SHA-256 differs from the manifest",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.describe(), self.code())
    }
}

impl core::error::Error for Error {}

impl From<minicbor::decode::Error> for Error {
    fn from(e: minicbor::decode::Error) -> Self {
        if e.is_end_of_input() {
            Error::Truncated
        } else {
            Error::Malformed
        }
    }
}
