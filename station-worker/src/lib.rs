//! Station worker.
pub mod probe;
