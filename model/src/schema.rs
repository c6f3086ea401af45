//! TensorFlow Lite schema (v3) numbers this runtime reads: field indexes and enum values.

/// Table field indexes (vtable slot = 4 + 2 * index).
pub mod field {
    pub mod model {
        pub const VERSION: usize = 0;
        pub const OPERATOR_CODES: usize = 1;
        pub const SUBGRAPHS: usize = 2;
        pub const BUFFERS: usize = 4;
    }
    pub mod operator_code {
        pub const DEPRECATED_BUILTIN_CODE: usize = 0;
        pub const CUSTOM_CODE: usize = 1;
        pub const BUILTIN_CODE: usize = 3;
    }
    pub mod subgraph {
        pub const TENSORS: usize = 0;
        pub const INPUTS: usize = 1;
        pub const OUTPUTS: usize = 2;
        pub const OPERATORS: usize = 3;
    }
    pub mod tensor {
        pub const SHAPE: usize = 0;
        pub const TYPE: usize = 1;
        pub const BUFFER: usize = 2;
        pub const QUANTIZATION: usize = 4;
        pub const IS_VARIABLE: usize = 5;
        pub const SPARSITY: usize = 6;
    }
    pub mod quantization {
        pub const SCALE: usize = 2;
        pub const ZERO_POINT: usize = 3;
        pub const QUANTIZED_DIMENSION: usize = 6;
    }
    pub mod operator {
        pub const OPCODE_INDEX: usize = 0;
        pub const INPUTS: usize = 1;
        pub const OUTPUTS: usize = 2;
        pub const BUILTIN_OPTIONS_TYPE: usize = 3;
        pub const BUILTIN_OPTIONS: usize = 4;
    }
    pub mod buffer {
        pub const DATA: usize = 0;
        pub const OFFSET: usize = 1;
    }
    pub mod conv2d {
        pub const PADDING: usize = 0;
        pub const STRIDE_W: usize = 1;
        pub const STRIDE_H: usize = 2;
        pub const ACTIVATION: usize = 3;
        pub const DILATION_W: usize = 4;
        pub const DILATION_H: usize = 5;
    }
    pub mod depthwise {
        pub const PADDING: usize = 0;
        pub const STRIDE_W: usize = 1;
        pub const STRIDE_H: usize = 2;
        pub const DEPTH_MULTIPLIER: usize = 3;
        pub const ACTIVATION: usize = 4;
        pub const DILATION_W: usize = 5;
        pub const DILATION_H: usize = 6;
    }
    pub mod pool {
        pub const PADDING: usize = 0;
        pub const STRIDE_W: usize = 1;
        pub const STRIDE_H: usize = 2;
        pub const FILTER_W: usize = 3;
        pub const FILTER_H: usize = 4;
        pub const ACTIVATION: usize = 5;
    }
    pub mod fully_connected {
        pub const ACTIVATION: usize = 0;
        pub const WEIGHTS_FORMAT: usize = 1;
    }
    pub mod softmax {
        pub const BETA: usize = 0;
    }
    /// ADD and SUB options.
    pub mod add_sub {
        pub const ACTIVATION: usize = 0;
    }
    pub mod mul {
        pub const ACTIVATION: usize = 0;
    }
    pub mod concatenation {
        pub const AXIS: usize = 0;
        pub const ACTIVATION: usize = 1;
    }
    pub mod reducer {
        pub const KEEP_DIMS: usize = 0;
    }
    pub mod leaky_relu {
        pub const ALPHA: usize = 0;
    }
    pub mod strided_slice {
        pub const BEGIN_MASK: usize = 0;
        pub const END_MASK: usize = 1;
        pub const ELLIPSIS_MASK: usize = 2;
        pub const NEW_AXIS_MASK: usize = 3;
        pub const SHRINK_AXIS_MASK: usize = 4;
        pub const OFFSET: usize = 5;
    }
}

/// `BuiltinOperator` values.
pub mod op {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RELU6: i32 = 21;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const TANH: i32 = 28;
    pub const PAD: i32 = 34;
    pub const MEAN: i32 = 40;
    pub const SUB: i32 = 41;
    pub const STRIDED_SLICE: i32 = 45;
    pub const LEAKY_RELU: i32 = 98;
    pub const QUANTIZE: i32 = 114;
    pub const HARD_SWISH: i32 = 117;
}

/// `BuiltinOptions` union tags.
pub mod options {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
    pub const CONCATENATION: u8 = 10;
    pub const ADD: u8 = 11;
    pub const MUL: u8 = 21;
    pub const REDUCER: u8 = 27;
    pub const SUB: u8 = 28;
    pub const STRIDED_SLICE: u8 = 32;
    pub const LEAKY_RELU: u8 = 75;
}

/// `TensorType` values.
pub mod tensor_type {
    pub const FLOAT32: u8 = 0;
    pub const INT32: u8 = 2;
    pub const INT8: u8 = 9;
}

/// `Padding` values.
pub mod padding {
    pub const SAME: u8 = 0;
    pub const VALID: u8 = 1;
}

/// `ActivationFunctionType` values.
pub mod activation {
    pub const NONE: u8 = 0;
    pub const RELU: u8 = 1;
    pub const RELU6: u8 = 3;
}

/// Name of builtin operator `code`, as the TensorFlow Lite schema spells it (for messages).
pub fn builtin_name(code: i32) -> Option<&'static str> {
    const NAMES: [&str; 210] = [
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "DEQUANTIZE",
        "EMBEDDING_LOOKUP",
        "FLOOR",
        "FULLY_CONNECTED",
        "HASHTABLE_LOOKUP",
        "L2_NORMALIZATION",
        "L2_POOL_2D",
        "LOCAL_RESPONSE_NORMALIZATION",
        "LOGISTIC",
        "LSH_PROJECTION",
        "LSTM",
        "MAX_POOL_2D",
        "MUL",
        "RELU",
        "RELU_N1_TO_1",
        "RELU6",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RNN",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SVDF",
        "TANH",
        "CONCAT_EMBEDDINGS",
        "SKIP_GRAM",
        "CALL",
        "CUSTOM",
        "EMBEDDING_LOOKUP_SPARSE",
        "PAD",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "GATHER",
        "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND",
        "TRANSPOSE",
        "MEAN",
        "SUB",
        "DIV",
        "SQUEEZE",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "STRIDED_SLICE",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "EXP",
        "TOPK_V2",
        "SPLIT",
        "LOG_SOFTMAX",
        "DELEGATE",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "CAST",
        "PRELU",
        "MAXIMUM",
        "ARG_MAX",
        "MINIMUM",
        "LESS",
        "NEG",
        "PADV2",
        "GREATER",
        "GREATER_EQUAL",
        "LESS_EQUAL",
        "SELECT",
        "SLICE",
        "SIN",
        "TRANSPOSE_CONV",
        "SPARSE_TO_DENSE",
        "TILE",
        "EXPAND_DIMS",
        "EQUAL",
        "NOT_EQUAL",
        "LOG",
        "SUM",
        "SQRT",
        "RSQRT",
        "SHAPE",
        "POW",
        "ARG_MIN",
        "FAKE_QUANT",
        "REDUCE_PROD",
        "REDUCE_MAX",
        "PACK",
        "LOGICAL_OR",
        "ONE_HOT",
        "LOGICAL_AND",
        "LOGICAL_NOT",
        "UNPACK",
        "REDUCE_MIN",
        "FLOOR_DIV",
        "REDUCE_ANY",
        "SQUARE",
        "ZEROS_LIKE",
        "FILL",
        "FLOOR_MOD",
        "RANGE",
        "RESIZE_NEAREST_NEIGHBOR",
        "LEAKY_RELU",
        "SQUARED_DIFFERENCE",
        "MIRROR_PAD",
        "ABS",
        "SPLIT_V",
        "UNIQUE",
        "CEIL",
        "REVERSE_V2",
        "ADD_N",
        "GATHER_ND",
        "COS",
        "WHERE",
        "RANK",
        "ELU",
        "REVERSE_SEQUENCE",
        "MATRIX_DIAG",
        "QUANTIZE",
        "MATRIX_SET_DIAG",
        "ROUND",
        "HARD_SWISH",
        "IF",
        "WHILE",
        "NON_MAX_SUPPRESSION_V4",
        "NON_MAX_SUPPRESSION_V5",
        "SCATTER_ND",
        "SELECT_V2",
        "DENSIFY",
        "SEGMENT_SUM",
        "BATCH_MATMUL",
        "PLACEHOLDER_FOR_GREATER_OP_CODES",
        "CUMSUM",
        "CALL_ONCE",
        "BROADCAST_TO",
        "RFFT2D",
        "CONV_3D",
        "IMAG",
        "REAL",
        "COMPLEX_ABS",
        "HASHTABLE",
        "HASHTABLE_FIND",
        "HASHTABLE_IMPORT",
        "HASHTABLE_SIZE",
        "REDUCE_ALL",
        "CONV_3D_TRANSPOSE",
        "VAR_HANDLE",
        "READ_VARIABLE",
        "ASSIGN_VARIABLE",
        "BROADCAST_ARGS",
        "RANDOM_STANDARD_NORMAL",
        "BUCKETIZE",
        "RANDOM_UNIFORM",
        "MULTINOMIAL",
        "GELU",
        "DYNAMIC_UPDATE_SLICE",
        "RELU_0_TO_1",
        "UNSORTED_SEGMENT_PROD",
        "UNSORTED_SEGMENT_MAX",
        "UNSORTED_SEGMENT_SUM",
        "ATAN2",
        "UNSORTED_SEGMENT_MIN",
        "SIGN",
        "BITCAST",
        "BITWISE_XOR",
        "RIGHT_SHIFT",
        "STABLEHLO_LOGISTIC",
        "STABLEHLO_ADD",
        "STABLEHLO_DIVIDE",
        "STABLEHLO_MULTIPLY",
        "STABLEHLO_MAXIMUM",
        "STABLEHLO_RESHAPE",
        "STABLEHLO_CLAMP",
        "STABLEHLO_CONCATENATE",
        "STABLEHLO_BROADCAST_IN_DIM",
        "STABLEHLO_CONVOLUTION",
        "STABLEHLO_SLICE",
        "STABLEHLO_CUSTOM_CALL",
        "STABLEHLO_REDUCE",
        "STABLEHLO_ABS",
        "STABLEHLO_AND",
        "STABLEHLO_COSINE",
        "STABLEHLO_EXPONENTIAL",
        "STABLEHLO_FLOOR",
        "STABLEHLO_LOG",
        "STABLEHLO_MINIMUM",
        "STABLEHLO_NEGATE",
        "STABLEHLO_OR",
        "STABLEHLO_POWER",
        "STABLEHLO_REMAINDER",
        "STABLEHLO_RSQRT",
        "STABLEHLO_SELECT",
        "STABLEHLO_SUBTRACT",
        "STABLEHLO_TANH",
        "STABLEHLO_SCATTER",
        "STABLEHLO_COMPARE",
        "STABLEHLO_CONVERT",
        "STABLEHLO_DYNAMIC_SLICE",
        "STABLEHLO_DYNAMIC_UPDATE_SLICE",
        "STABLEHLO_PAD",
        "STABLEHLO_IOTA",
        "STABLEHLO_DOT_GENERAL",
        "STABLEHLO_REDUCE_WINDOW",
        "STABLEHLO_SORT",
        "STABLEHLO_WHILE",
        "STABLEHLO_GATHER",
        "STABLEHLO_TRANSPOSE",
        "DILATE",
        "STABLEHLO_RNG_BIT_GENERATOR",
        "REDUCE_WINDOW",
        "STABLEHLO_COMPOSITE",
        "STABLEHLO_SHIFT_LEFT",
        "STABLEHLO_CBRT",
        "STABLEHLO_CASE",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
}
