//! flashgate's secure bootloader (at the reset address).
//!
//! At every reset: read the device record and run the boot checks (`boot::check_identity`: the
//! record names this chip, carries the keys this image pins and a certificate that verifies
//! under the pinned authority key; a failure starts nothing and hello says why); finish or revert an interrupted update, verify the
//! OS image in its slot and start it if it passes (`update::install::boot`: vendor signature,
//! product, load address, size, anti-rollback floor, body digest). Otherwise serve the UART
//! forever through the protocol crate's `uart::BootloaderService` (hello reporting why no OS
//! runs, status receipts, the update transfer and its install); this file only moves bytes
//! and carries out the service's answer: jump to a verified image, or halt.
//!
//! With the feature `net` (the emulated board's LAN9118), a provisioned device that has no OS
//! to start, or was asked to update, also fetches the update itself: it connects to the
//! device gateway and serves the same session over TCP ([`net`]), polling the UART and the
//! network in turn, so either link can carry the update.
#![no_std]
#![no_main]

use flashgate_board::{cpu, Board, SerialPort, UniqueId};
use flashgate_protocol::boot;
use flashgate_protocol::device_record::DeviceRecord;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::{BootloaderAction, BootloaderService, FrameDecoder};
use flashgate_protocol::update::boot_state;
use flashgate_protocol::update::install::{self, BootDecision, Steps};
use flashgate_protocol::ErrorCode;

#[cfg(feature = "net")]
mod net;

flashgate_board::vector_table!();
// The keys this image pins, filled by the signing tool (protocol `trust_anchors`).
flashgate_board::trust_anchors!();

#[allow(unsafe_code, reason = "the runtime's Reset calls `main` by name")]
#[no_mangle]
extern "C" fn main() -> ! {
    let Some(mut board) = Board::take() else {
        cpu::system_reset()
    };
    let record = boot::read_device_record(&mut board.flash);
    let chip_uid = board.uid.unique_id();
    // The record must name this chip and carry a certificate under the keys this image pins:
    // a copied flash, a record keyed without a certificate or under other keys starts nothing.
    let refused = record.as_ref().ok().and_then(|record| {
        flashgate_board::rt::trust_anchors()
            .and_then(|anchors| boot::check_identity(record, &chip_uid, &anchors))
            .err()
    });
    let update_requested = cpu::take_update_request();
    let state = match (&record, refused) {
        (Ok(_), Some(reason)) => DeviceState::NoValidImage { reason },
        (Ok(_), None) if update_requested => DeviceState::NoValidImage {
            reason: ErrorCode::UpdateMode,
        },
        (Ok(record), None) => start_os_or_say_why(&mut board, record),
        (Err(reason), _) => DeviceState::NoValidImage { reason: *reason },
    };
    serve(board, record.as_ref().ok(), chip_uid, state, refused)
}

/// Finishes or reverts an interrupted install, counts a trial boot, verifies the OS slot
/// (`update::install::boot`) and starts the OS; returns only when there is none to start.
#[allow(unsafe_code, reason = "jumps into the verified OS image")]
fn start_os_or_say_why(board: &mut Board, record: &DeviceRecord) -> DeviceState {
    match install::boot(&mut board.flash, record, &mut Steps::unlimited()) {
        // SAFETY: the image passed signature and digest checks, and its vector table is where
        // its verified header says it was linked.
        Ok(BootDecision::Start(os)) => unsafe { cpu::jump_to_image(os.vector_table) },
        Ok(BootDecision::NoImage(reason)) | Err(reason) => DeviceState::NoValidImage { reason },
    }
}

/// One frame in, the service's answer out, from the UART and (feature `net`, when the device
/// may fetch) the network.
#[allow(unsafe_code, reason = "jumps into the OS image the service verified")]
fn serve(
    board: Board,
    record: Option<&DeviceRecord>,
    chip_uid: flashgate_protocol::Serial,
    state: DeviceState,
    refused: Option<ErrorCode>,
) -> ! {
    #[cfg(feature = "net")]
    let Board {
        mut flash,
        mut uart,
        eth,
        mut entropy,
        ..
    } = board;
    #[cfg(not(feature = "net"))]
    let Board {
        mut flash,
        mut uart,
        ..
    } = board;
    let boot = boot_state::read(&mut flash).unwrap_or_default();
    let mut service = BootloaderService::new(record, chip_uid, state, boot);
    if let Some(reason) = refused {
        service = service.refusing_to_boot(reason);
    }
    // Only a device that can prove who it is fetches: an unprovisioned one, or one whose boot
    // checks failed, waits on the UART alone.
    #[cfg(feature = "net")]
    let mut network = match (record, refused) {
        (Some(_), None) => net::NetLink::up(eth, &mut entropy).ok(),
        _ => None,
    };
    let mut decoder = FrameDecoder::new();
    loop {
        let mut action = BootloaderAction::Continue;
        if let Some(byte) = uart.try_read() {
            if let Some(frame) = decoder.push(byte) {
                action = service.handle(frame, &mut flash, &mut uart);
            }
        }
        #[cfg(feature = "net")]
        if let (BootloaderAction::Continue, Some(link)) = (action, network.as_mut()) {
            action = link.poll(&mut service, &mut flash);
        }
        match action {
            BootloaderAction::Continue => {}
            // SAFETY: as in `start_os_or_say_why`: `install::boot` verified the image at its
            // linked address.
            BootloaderAction::Start(os) => unsafe { cpu::jump_to_image(os.vector_table) },
            // Power-cut tests: nothing else happens until the power goes.
            BootloaderAction::Halt => loop {
                core::hint::spin_loop();
            },
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A bootloader that panics starts over rather than hang on the production line.
    cpu::system_reset()
}
