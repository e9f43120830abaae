#![no_main]
//! The device record (config and device key) the bootloader and OS read from flash.
flashgate_fuzz::codec_target!(flashgate_protocol::device_record::DeviceRecord);
