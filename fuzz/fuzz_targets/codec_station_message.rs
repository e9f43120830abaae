#![no_main]
//! Provisioning requests as the loader decodes them (after opening the sealed frame).
flashgate_fuzz::codec_target!(flashgate_protocol::provisioning::messages::StationMessage<'_>);
