#![no_main]
//! The bootloader's UART service (update transfer, install, status) on a provisioned device:
//! any sequence of frames, raw or well-formed; everything it sends back must be a good frame.
use flashgate_fuzz::{device, uart};
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::{BootloaderAction, BootloaderService};
use flashgate_protocol::update::boot_state::BootState;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let record = device::record();
    let mut flash = device::flash();
    let mut service = BootloaderService::new(
        Some(&record),
        device::SERIAL,
        DeviceState::OsRunning { version: 1 },
        BootState::default(),
    );
    let mut sent = Vec::new();
    let mut halted = false;
    uart::frames_in(data, |frame| {
        if halted {
            return;
        }
        let mut sink = |f: &[u8]| sent.extend_from_slice(f);
        match service.handle(frame, &mut flash, &mut sink) {
            BootloaderAction::Continue => {}
            BootloaderAction::Start(_) | BootloaderAction::Halt => halted = true,
        }
    });
    uart::check_sent(&sent);
});
