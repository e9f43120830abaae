#![no_main]
//! The loader hello the station reads from the mailbox before any key exists.
flashgate_fuzz::codec_target!(flashgate_protocol::provisioning::LoaderHello);
