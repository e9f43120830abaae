//! Library side of the `flashgate` CLI: flows that tests drive directly.
#![forbid(unsafe_code)]

pub mod context;
pub mod device_update;
