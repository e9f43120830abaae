//! flashgate's secure bootloader (at the reset address).
//!
//! At every reset: read the device record; verify the OS image in its slot through the
//! protocol crate (vendor signature, product, load address, size, anti-rollback floor, body
//! digest); start it if it passes. Otherwise serve the UART update protocol forever, reporting
//! why no OS runs in every `hello`.
#![no_std]
#![no_main]

use flashgate_board::{cpu, Board, SerialPort};
use flashgate_protocol::boot;
use flashgate_protocol::device_record::DeviceRecord;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::{DeviceServer, FrameDecoder, MAX_PAYLOAD, OVERHEAD};

flashgate_board::vector_table!();

/// Anti-rollback floor kept in `BOOT_STATE_ADDR` (reserved for the update path): until that
/// exists, only the floor in the device record applies.
const BOOT_STATE_ROLLBACK_FLOOR: u32 = 0;

#[no_mangle]
extern "C" fn main() -> ! {
    let Some(mut board) = Board::take() else {
        cpu::system_reset()
    };
    let record = boot::read_device_record(&mut board.flash);
    let state = match &record {
        Ok(record) => {
            match boot::verify_os_image(&mut board.flash, record, BOOT_STATE_ROLLBACK_FLOOR) {
                // SAFETY: the image passed signature and digest checks, and its vector table
                // is where its verified header says it was linked.
                Ok(os) => unsafe { cpu::jump_to_image(os.vector_table) },
                Err(reason) => DeviceState::NoValidImage { reason },
            }
        }
        Err(reason) => DeviceState::NoValidImage { reason: *reason },
    };
    serve_updates(&mut board, record.as_ref().ok(), state)
}

/// The UART update service: one request frame in, one response frame out.
fn serve_updates(board: &mut Board, record: Option<&DeviceRecord>, state: DeviceState) -> ! {
    let mut server = DeviceServer::new(record, state);
    let mut decoder = FrameDecoder::new();
    let mut out = [0u8; MAX_PAYLOAD + OVERHEAD];
    loop {
        let byte = board.uart.read();
        let reply = match decoder.push(byte) {
            None => continue,
            Some(Ok(msg_type)) => server.handle(msg_type, decoder.payload(), &mut out),
            Some(Err(code)) => DeviceServer::error_frame(code, &mut out),
        };
        if let Ok(len) = reply {
            board.uart.write_all(&out[..len]);
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A bootloader that panics starts over rather than hang on the production line.
    cpu::system_reset()
}
