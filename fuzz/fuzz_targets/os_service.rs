#![no_main]
//! The OS's UART service (hello, status, app install and start, data requests, messages down) on a
//! provisioned device: any sequence of frames; everything it sends back must be a good frame.
use flashgate_fuzz::{device, uart};
use flashgate_protocol::data_stream::open_down;
use flashgate_protocol::uart::{OsAction, OsService};
use flashgate_protocol::update::boot_state::BootState;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let record = device::record();
    let mut flash = device::flash();
    let mut service = OsService::new(Some(&record), device::SERIAL, 1, BootState::default());
    let mut sent = Vec::new();
    let mut entered_bootloader = false;
    uart::frames_in(data, |frame| {
        if entered_bootloader {
            return;
        }
        let mut sink = |f: &[u8]| sent.extend_from_slice(f);
        match service.handle(frame, &mut flash, &mut sink) {
            OsAction::StartApp(app) => service.app_returned(&app, 0, &mut sink),
            OsAction::EnterBootloader => entered_bootloader = true,
            // The OS opens it as the device would (the message itself: `down_message`).
            OsAction::DownMessage(mut message) => {
                let _ = open_down(&device::DEVICE_KEY, message.as_mut_slice());
            }
            OsAction::Continue
            | OsAction::EmitTelemetry { .. }
            | OsAction::RotateEpoch
            | OsAction::ReportStatus => {}
        }
    });
    uart::check_sent(&sent);
});
