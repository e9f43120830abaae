//! Library side of the `flashgate` CLI: what the binary's commands and the end-to-end tests
//! share.
//!
//! - [`context`]: named contexts (endpoint + token file) and the flag > env > context precedence;
//! - [`grpc`]: the coordinator's clients, with the operator credentials added by one interceptor;
//! - [`device_update`]: the field update of one device over its UART (`flashgate device update`);
//! - [`device_app`]: an app installed on one device from its package (`flashgate device
//!   app-install`);
//! - [`device_verify`]: genuine, unregistered or clone suspected (`flashgate device verify`);
//! - [`image_tool`]: key files, signing and checking images (`flashgate image`).
//!
//! The commands themselves live in the binary, one file per command group (see `main.rs`).

pub mod context;
pub mod device_app;
pub mod device_update;
pub mod device_verify;
pub mod grpc;
pub mod image_tool;
