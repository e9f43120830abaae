//! flashgate's secure bootloader (at the reset address).
//!
//! At every reset: read the device record; verify the OS image in its slot through the
//! protocol crate (vendor signature, product, load address, size, anti-rollback floor, body
//! digest); start it if it passes. Before that, finish or revert an interrupted update
//! (`update::install::boot`). Otherwise serve the UART forever: `hello` (reporting why no OS
//! runs), status receipts and the update transfer (`update::session`).
#![no_std]
#![no_main]

use flashgate_board::{cpu, Board, SerialPort};
use flashgate_protocol::boot;
use flashgate_protocol::device_record::DeviceRecord;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::{self, DeviceServer, FrameDecoder, MAX_PAYLOAD, OVERHEAD};
use flashgate_protocol::update::install::{self, BootDecision, Steps};
use flashgate_protocol::update::session::{msg, Action, UpdateSession};
use flashgate_protocol::update::boot_state;
use flashgate_protocol::ErrorCode;

flashgate_board::vector_table!();

#[no_mangle]
extern "C" fn main() -> ! {
    let Some(mut board) = Board::take() else {
        cpu::system_reset()
    };
    let record = boot::read_device_record(&mut board.flash);
    let state = match &record {
        Ok(_) if cpu::take_update_request() => DeviceState::NoValidImage {
            reason: ErrorCode::UpdateMode,
        },
        Ok(record) => start_os_or_say_why(&mut board, record),
        Err(reason) => DeviceState::NoValidImage { reason: *reason },
    };
    serve_updates(&mut board, record.as_ref().ok(), state)
}

/// Finishes or reverts an interrupted install, counts a trial boot, verifies the OS slot
/// (`update::install::boot`) and starts the OS; returns only when there is none to start.
fn start_os_or_say_why(board: &mut Board, record: &DeviceRecord) -> DeviceState {
    match install::boot(&mut board.flash, record, &mut Steps::unlimited()) {
        // SAFETY: the image passed signature and digest checks, and its vector table is where
        // its verified header says it was linked.
        Ok(BootDecision::Start(os)) => unsafe { cpu::jump_to_image(os.vector_table) },
        Ok(BootDecision::NoImage(reason)) | Err(reason) => DeviceState::NoValidImage { reason },
    }
}

/// The UART service: `hello`, status receipts and the update transfer, one request frame in,
/// one response frame out.
fn serve_updates(board: &mut Board, record: Option<&DeviceRecord>, state: DeviceState) -> ! {
    let boot = boot_state::read(&mut board.flash).unwrap_or_default();
    let mut server = DeviceServer::new(record, state).with_boot_state(boot);
    let mut session = UpdateSession::new();
    let mut decoder = FrameDecoder::new();
    let mut out = [0u8; MAX_PAYLOAD + OVERHEAD];
    loop {
        let byte = board.uart.read();
        let reply = match decoder.push(byte) {
            None => continue,
            Some(Ok(msg_type)) if UpdateSession::handles(msg_type) => {
                let Some(record) = record else {
                    let _ = send_error(board, ErrorCode::NotProvisioned, &mut out);
                    continue;
                };
                let mut small = [0u8; 8];
                match session.handle(msg_type, decoder.payload(), &mut board.flash, record, &mut small)
                {
                    Ok(Action::Reply(ty, n)) => uart::encode_frame(ty, &small[..n], &mut out),
                    Ok(Action::Install { halt_after }) => run_install(board, record, halt_after, &mut out),
                    Err(code) => DeviceServer::error_frame(code, &mut out),
                }
            }
            Some(Ok(msg::ENTER_UPDATE)) => uart::encode_frame(msg::UPDATE_MODE, &[], &mut out),
            Some(Ok(msg_type)) => server.handle(msg_type, decoder.payload(), &mut out),
            Some(Err(code)) => DeviceServer::error_frame(code, &mut out),
        };
        if let Ok(len) = reply {
            board.uart.write_all(&out[..len]);
        }
    }
}

fn send_error(board: &mut Board, code: ErrorCode, out: &mut [u8]) -> Result<(), ErrorCode> {
    let len = DeviceServer::error_frame(code, out)?;
    board.uart.write_all(&out[..len]);
    Ok(())
}

/// Installs the staged image and starts it. With `halt_after`, stops after that step and
/// waits for the power to be cut (power-cut tests: nothing else happens until then).
fn run_install(
    board: &mut Board,
    record: &DeviceRecord,
    halt_after: Option<u32>,
    out: &mut [u8],
) -> Result<usize, ErrorCode> {
    let mut steps = Steps {
        done: 0,
        halt_after,
    };
    let result = install::install(&mut board.flash, record, &mut steps).and_then(|state| {
        let len = uart::encode_frame(msg::INSTALLED, &state.new_version.to_le_bytes(), out)?;
        board.uart.write_all(&out[..len]);
        install::boot(&mut board.flash, record, &mut steps)
    });
    match result {
        // SAFETY: as in `start_os_or_say_why`: a verified image at its linked address.
        Ok(BootDecision::Start(os)) => unsafe { cpu::jump_to_image(os.vector_table) },
        Ok(BootDecision::NoImage(code)) => DeviceServer::error_frame(code, out),
        Err(ErrorCode::InstallHalted) => {
            if let Ok(len) = uart::encode_frame(msg::HALTED, &steps.done.to_le_bytes(), out) {
                board.uart.write_all(&out[..len]);
            }
            loop {
                core::hint::spin_loop();
            }
        }
        Err(code) => DeviceServer::error_frame(code, out),
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A bootloader that panics starts over rather than hang on the production line.
    cpu::system_reset()
}
