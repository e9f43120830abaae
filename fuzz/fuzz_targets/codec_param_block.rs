#![no_main]
//! The parameter block the loader reads from RAM at start.
flashgate_fuzz::codec_target!(flashgate_protocol::provisioning::ParamBlock);
