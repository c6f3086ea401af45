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
}

/// `BuiltinOperator` values.
pub mod op {
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const MAX_POOL_2D: i32 = 17;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
}

/// `BuiltinOptions` union tags.
pub mod options {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
}

/// `TensorType` values.
pub mod tensor_type {
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
