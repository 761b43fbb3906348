//! Denormal flushing (FTZ/DAZ), as TensorFlow does around its kernels.
//!
//! Dying ReLUs drive optimizer state into the denormal range, where x86 arithmetic is up to
//! 100x slower; flushing them to zero is what Keras/TensorFlow numbers assume. The mode lives in
//! the per-thread MXCSR register, so the kernels' pool threads take the caller's mode for every
//! part of a call they run (and restore their own after): results never depend on which thread
//! ran a part.

/// MXCSR "flush to zero" (denormal results become 0) and "denormals are zero" (denormal inputs
/// read as 0) bits.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: stmxcsr stores the 4-byte control register to a valid local.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
    }
    value
}

/// Sets only the FTZ/DAZ bits of MXCSR (rounding and exception masks stay as Rust expects).
#[cfg(target_arch = "x86_64")]
fn set_flush(flush: bool) {
    let current = read_mxcsr();
    let value = if flush {
        current | FTZ_DAZ
    } else {
        current & !FTZ_DAZ
    };
    // SAFETY: loads a control word that differs from the current one only in FTZ/DAZ, which
    // affect denormal handling and nothing memory safety depends on.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, readonly, preserves_flags));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn set_flush(_flush: bool) {}

/// Whether denormals are flushed on the current thread (always false off x86-64).
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        read_mxcsr() & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Flushes denormals on the current thread while alive; restores the previous mode on drop.
/// Wrap a training run (or each JIT-compiled call) in one.
#[must_use = "denormals are flushed only while the guard lives"]
pub struct FlushDenormals {
    previous: bool,
    // MXCSR is per thread: the guard must be dropped on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl FlushDenormals {
    pub fn enable() -> Self {
        let previous = denormals_flushed();
        set_flush(true);
        FlushDenormals {
            previous,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        set_flush(self.previous);
    }
}

/// The calling thread's denormal mode, to re-apply on the pool thread that runs a part.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DenormalMode(bool);

impl DenormalMode {
    pub(crate) fn current() -> Self {
        DenormalMode(denormals_flushed())
    }

    /// Applies the mode to the thread calling this.
    pub(crate) fn apply(self) {
        if denormals_flushed() != self.0 {
            set_flush(self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn guard_flushes_denormals_and_restores_the_mode() {
        let tiny = black_box(1e-38f32);
        assert!(!denormals_flushed());
        assert!(tiny * black_box(0.01) > 0.0);
        {
            let _guard = FlushDenormals::enable();
            assert!(denormals_flushed() || cfg!(not(target_arch = "x86_64")));
            #[cfg(target_arch = "x86_64")]
            assert_eq!(black_box(tiny) * black_box(0.01), 0.0);
        }
        assert!(!denormals_flushed());
        assert!(tiny * black_box(0.01) > 0.0);
    }
}
