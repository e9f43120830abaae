#![no_main]
//! The loader mailbox header the station reads over the debug link.
flashgate_fuzz::codec_target!(flashgate_protocol::mailbox::Header);
