#![no_main]
//! The loader's replies as the station decodes them (receipts included).
flashgate_fuzz::codec_target!(flashgate_protocol::provisioning::messages::TargetReply<'_>);
