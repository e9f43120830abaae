//! Station worker.
pub mod device_link;
pub mod probe;
pub mod provisioning;
