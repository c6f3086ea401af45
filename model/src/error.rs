//! Why a model, a validation set or an inference was refused: one variant per cause, no strings.

use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// An offset or a length points outside the model bytes.
    OutOfBounds,
    /// The structure is inconsistent (bad vtable, wrong vector length, missing field).
    Malformed,
    /// Not a TensorFlow Lite flatbuffer (file identifier is not `TFL3`).
    BadIdentifier,
    /// Schema version other than 3.
    UnsupportedVersion,
    /// The model needs exactly one subgraph.
    UnsupportedSubgraphs,
    /// An operator this runtime does not implement: its builtin code (-1 for a custom operator).
    UnsupportedOperator { code: i32 },
    /// A feature of a supported operator this runtime does not implement (an ellipsis or
    /// new-axis mask in STRIDED_SLICE, MEAN over other axes than height and width...).
    UnsupportedOption,
    /// A fused activation other than NONE, RELU, RELU6.
    UnsupportedActivation,
    /// A tensor type other than int8 activations/weights and int32 biases.
    UnsupportedType,
    /// Quantization this runtime cannot follow (missing scale, non-zero weight zero point...).
    UnsupportedQuantization,
    /// Shapes of an operator's tensors do not fit together, or a batch other than 1.
    ShapeMismatch,
    /// A constant tensor (weights, bias) has no data or the wrong number of bytes.
    MissingData,
    /// A size that overflows the runtime's arithmetic (arena offsets, element counts).
    TooLarge,
    /// More tensors than `graph::MAX_TENSORS`.
    TooManyTensors { max: usize },
    /// More operators than `graph::MAX_OPS`.
    TooManyOps { max: usize },
    /// An operator with more inputs than `ops::MAX_INPUTS`.
    TooManyInputs { max: usize },
    /// A tensor of more dimensions than `graph::MAX_DIMS`.
    TooManyDims { max: usize },
    /// The arena given is smaller than the model needs.
    ArenaTooSmall { needed: usize },
    /// The input given does not have the input tensor's length.
    InputLength,
    /// Validation set: bad magic, version, or sizes that do not add up.
    BadValidationSet,
    /// Validation set does not match the model (input length, number of classes).
    ValidationSetMismatch,
}

impl Error {
    /// Stable snake_case name for reports and logs.
    pub const fn code(self) -> &'static str {
        match self {
            Error::OutOfBounds => "out_of_bounds",
            Error::Malformed => "malformed",
            Error::BadIdentifier => "bad_identifier",
            Error::UnsupportedVersion => "unsupported_version",
            Error::UnsupportedSubgraphs => "unsupported_subgraphs",
            Error::UnsupportedOperator { .. } => "unsupported_operator",
            Error::UnsupportedOption => "unsupported_option",
            Error::UnsupportedActivation => "unsupported_activation",
            Error::UnsupportedType => "unsupported_type",
            Error::UnsupportedQuantization => "unsupported_quantization",
            Error::ShapeMismatch => "shape_mismatch",
            Error::MissingData => "missing_data",
            Error::TooLarge => "too_large",
            Error::TooManyTensors { .. } => "too_many_tensors",
            Error::TooManyOps { .. } => "too_many_ops",
            Error::TooManyInputs { .. } => "too_many_inputs",
            Error::TooManyDims { .. } => "too_many_dims",
            Error::ArenaTooSmall { .. } => "arena_too_small",
            Error::InputLength => "input_length",
            Error::BadValidationSet => "bad_validation_set",
            Error::ValidationSetMismatch => "validation_set_mismatch",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ArenaTooSmall { needed } => write!(f, "arena too small: {needed} bytes needed"),
            Error::UnsupportedOperator { code } => match crate::schema::builtin_name(*code) {
                Some(name) if *code >= 0 => {
                    write!(f, "unsupported operator {name} (builtin code {code})")
                }
                _ if *code < 0 => f.write_str("unsupported custom operator"),
                _ => write!(f, "unsupported operator (builtin code {code})"),
            },
            Error::TooManyTensors { max } => write!(f, "more than {max} tensors"),
            Error::TooManyOps { max } => write!(f, "more than {max} operators"),
            Error::TooManyInputs { max } => write!(f, "an operator with more than {max} inputs"),
            Error::TooManyDims { max } => write!(f, "a tensor of more than {max} dimensions"),
            other => f.write_str(other.code()),
        }
    }
}

impl core::error::Error for Error {}
