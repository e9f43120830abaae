#![no_main]
//! The boot-state slot the bootloader reads on every boot.
flashgate_fuzz::codec_target!(flashgate_protocol::update::boot_state::BootState);
