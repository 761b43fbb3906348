//! Counter-based random numbers (dropout masks): the runtime's, shared with generated code.

pub use fm_runtime::random::uniform;
