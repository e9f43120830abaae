#![no_main]
//! Device messages as the station decodes them from a UART frame body.
flashgate_fuzz::codec_target!(flashgate_protocol::uart::DeviceMessage<'_>);
