//! flashgate's demo OS: the image the bootloader starts from the OS slot.
//!
//! Sends a boot banner frame on the UART, then answers `hello` with "OS running" and the
//! version from its own signed header (at `OS_SLOT_ADDR`, in front of this image), using the
//! same protocol-crate server as the bootloader.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use flashgate_board::{Board, NorFlash, SerialPort};
use flashgate_protocol::boot;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::OS_SLOT_ADDR;
use flashgate_protocol::uart::{self, msg, DeviceServer, FrameDecoder, MAX_PAYLOAD, OVERHEAD};

flashgate_board::vector_table!();

#[no_mangle]
extern "C" fn main() -> ! {
    let Some(mut board) = Board::take() else {
        flashgate_board::cpu::system_reset()
    };
    // The bootloader verified header and body before starting us; here they are only read.
    let mut raw = [0u8; SIGNED_HEADER_LEN];
    let version = board
        .flash
        .read(OS_SLOT_ADDR, &mut raw)
        .ok()
        .and_then(|()| SignedImageHeader::parse(&raw).ok())
        .map_or(0, |signed| signed.header.version);
    let record = boot::read_device_record(&mut board.flash).ok();

    let mut out = [0u8; MAX_PAYLOAD + OVERHEAD];
    let mut banner = TextBuf::<96>::new();
    let _ = write!(banner, "flashgate demo-os v{version} on {}", Board::NAME);
    if let Ok(len) = uart::encode_frame(msg::BOOT_BANNER, banner.as_bytes(), &mut out) {
        board.uart.write_all(&out[..len]);
    }

    let mut server = DeviceServer::new(record.as_ref(), DeviceState::OsRunning { version });
    let mut decoder = FrameDecoder::new();
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

/// A fixed-size text buffer for `write!` without an allocator; output past `N` is cut.
struct TextBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> TextBuf<N> {
    const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> core::fmt::Write for TextBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    flashgate_board::cpu::system_reset()
}
