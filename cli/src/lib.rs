//! Library side of the `flashgate` CLI: flows that tests drive directly.
#![forbid(unsafe_code)]

pub mod device_update;
