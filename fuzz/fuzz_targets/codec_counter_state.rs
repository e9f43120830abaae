#![no_main]
//! A data-stream counter journal entry read from flash at boot.
flashgate_fuzz::codec_target!(flashgate_protocol::data_stream::CounterState);
