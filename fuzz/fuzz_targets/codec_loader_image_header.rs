#![no_main]
//! The RAM loader image header the station checks before loading it.
flashgate_fuzz::codec_target!(flashgate_protocol::provisioning::LoaderImageHeader);
