#![no_main]
//! Requests as the device decodes them from a UART frame body.
flashgate_fuzz::codec_target!(flashgate_protocol::uart::Request<'_>);
