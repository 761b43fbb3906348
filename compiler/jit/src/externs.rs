//! The one table of precompiled functions generated code calls: for each, its symbol name, its
//! address and its Cranelift signature. Adding a runtime kernel means adding a variant and its
//! row in [`Extern::info`].

use cranelift_codegen::ir::types::{F32, I32, I64};
use cranelift_codegen::ir::{AbiParam, Signature, Type};
use cranelift_codegen::isa::CallConv;
use fm_runtime::kernels::ffi;

/// A precompiled function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Extern {
    Sgemm,
    Conv2dFwd,
    Conv2dFwdFused,
    Conv2dBwdInput,
    Conv2dBwdKernel,
    MaxPool2dFwd,
    MaxPool2dBwd,
    MaxPool2dBwdRelu,
    AvgPool2dFwd,
    AvgPool2dBwd,
    Powf,
}

/// A symbol name, an address, parameter types and the return type.
type Info = (&'static str, *const u8, &'static [Type], Option<Type>);

impl Extern {
    pub const ALL: [Extern; 11] = [
        Extern::Sgemm,
        Extern::Conv2dFwd,
        Extern::Conv2dFwdFused,
        Extern::Conv2dBwdInput,
        Extern::Conv2dBwdKernel,
        Extern::MaxPool2dFwd,
        Extern::MaxPool2dBwd,
        Extern::MaxPool2dBwdRelu,
        Extern::AvgPool2dFwd,
        Extern::AvgPool2dBwd,
        Extern::Powf,
    ];

    fn info(self) -> Info {
        const CONV: &[Type] = &[I64, I64, I64, I64, I64];
        match self {
            Extern::Sgemm => (
                "fm_sgemm",
                ffi::fm_sgemm as *const u8,
                &[
                    I64, I64, I64, F32, I64, I64, I64, I64, I64, I64, F32, I64, I64, I64, I64,
                ],
                None,
            ),
            Extern::Conv2dFwd => (
                "fm_conv2d_fwd",
                ffi::fm_conv2d_fwd as *const u8,
                CONV,
                Some(I32),
            ),
            Extern::Conv2dFwdFused => (
                "fm_conv2d_fwd_fused",
                ffi::fm_conv2d_fwd_fused as *const u8,
                &[I64, I64, I64, I64, I64, I64, I64],
                Some(I32),
            ),
            Extern::Conv2dBwdInput => (
                "fm_conv2d_bwd_input",
                ffi::fm_conv2d_bwd_input as *const u8,
                CONV,
                Some(I32),
            ),
            Extern::Conv2dBwdKernel => (
                "fm_conv2d_bwd_kernel",
                ffi::fm_conv2d_bwd_kernel as *const u8,
                CONV,
                Some(I32),
            ),
            Extern::MaxPool2dFwd => (
                "fm_max_pool2d_fwd",
                ffi::fm_max_pool2d_fwd as *const u8,
                &[I64, I64, I64],
                Some(I32),
            ),
            Extern::MaxPool2dBwd => (
                "fm_max_pool2d_bwd",
                ffi::fm_max_pool2d_bwd as *const u8,
                &[I64, I64, I64, I64],
                Some(I32),
            ),
            Extern::MaxPool2dBwdRelu => (
                "fm_max_pool2d_bwd_relu",
                ffi::fm_max_pool2d_bwd_relu as *const u8,
                &[I64, I64, I64, I64],
                Some(I32),
            ),
            Extern::AvgPool2dFwd => (
                "fm_avg_pool2d_fwd",
                ffi::fm_avg_pool2d_fwd as *const u8,
                &[I64, I64, I64],
                Some(I32),
            ),
            Extern::AvgPool2dBwd => (
                "fm_avg_pool2d_bwd",
                ffi::fm_avg_pool2d_bwd as *const u8,
                &[I64, I64, I64],
                Some(I32),
            ),
            Extern::Powf => (
                "fm_jit_powf",
                super::math::fm_jit_powf as *const u8,
                &[F32, F32],
                Some(F32),
            ),
        }
    }

    /// The symbol generated code imports.
    pub fn name(self) -> &'static str {
        self.info().0
    }

    /// Where the function is in this process.
    pub fn address(self) -> *const u8 {
        self.info().1
    }

    pub fn signature(self, cc: CallConv) -> Signature {
        let (_, _, params, ret) = self.info();
        let mut s = Signature::new(cc);
        s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        s.returns.extend(ret.map(AbiParam::new));
        s
    }
}
