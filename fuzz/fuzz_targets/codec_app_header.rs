#![no_main]
//! The app header the OS checks before calling an installed app.
flashgate_fuzz::codec_target!(flashgate_protocol::app::AppHeader);
