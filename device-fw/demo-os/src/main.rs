//! flashgate's demo OS: the image the bootloader starts from the OS slot.
//!
//! - Sends a boot banner frame, then at once its first sealed data record (no round trip:
//!   the keys come from the device key, the counter from the flash journal), see [`data`].
//! - Answers `hello` with "OS running" and the version from its own signed header.
//! - Installs vendor-signed applications into the app slot and starts them with a function
//!   call through a call table, without a reset, see [`apps`].
//! - Reports its status (uptime, record counter, apps started) on request.
#![no_std]
#![no_main]

mod apps;
mod data;

use core::fmt::Write as _;

use flashgate_board::cpu::SysTickCounter;
use flashgate_board::{Board, NorFlash, SerialPort};
use flashgate_protocol::boot;
use flashgate_protocol::codec::Writer;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::OS_SLOT_ADDR;
use flashgate_protocol::uart::{self, msg, DeviceServer, FrameDecoder, MAX_PAYLOAD, OVERHEAD};
use flashgate_protocol::update::session::msg as update_msg;
use flashgate_protocol::ErrorCode;

use flashgate_board::text::TextBuf;

flashgate_board::vector_table!();

/// A telemetry record every 2^26 ticks (about 2.7 s at 25 MHz).
const HEARTBEAT_TICKS: u64 = 1 << 26;

/// Ticks since start, from SysTick polled often enough (it wraps every 2^24 ticks, 0.67 s).
pub struct Uptime {
    systick: SysTickCounter,
    last: u32,
    ticks: u64,
}

impl Uptime {
    fn start() -> Self {
        let systick = SysTickCounter::start();
        let last = systick.now();
        Self {
            systick,
            last,
            ticks: 0,
        }
    }

    /// Advances and returns the tick count.
    pub fn poll(&mut self) -> u64 {
        let now = self.systick.now();
        self.ticks += u64::from(self.last.wrapping_sub(now) & SysTickCounter::MASK);
        self.last = now;
        self.ticks
    }
}

/// Everything the OS owns; the app call table reaches it through [`apps::CURRENT_OS`].
pub struct Os {
    board: Board,
    uptime: Uptime,
    data: Option<data::DataStream>,
    apps: apps::AppState,
    /// Ticks the first sealed record took (journal reservation + key derivation + seal + send).
    first_record_ticks: u32,
    out: [u8; MAX_PAYLOAD + OVERHEAD],
}

impl Os {
    /// Sends one frame on the UART.
    pub fn send(&mut self, msg_type: u8, payload: &[u8]) {
        if let Ok(len) = uart::encode_frame(msg_type, payload, &mut self.out) {
            self.board.uart.write_all(&self.out[..len]);
        }
    }

    fn send_error(&mut self, code: ErrorCode) {
        self.send(msg::ERROR, &(code as u32).to_le_bytes());
    }

    /// Seals `body` as a telemetry record and sends it; returns its counter.
    pub fn emit_telemetry(&mut self, body: &[u8]) -> Result<u32, ErrorCode> {
        let data = self.data.as_mut().ok_or(ErrorCode::NotProvisioned)?;
        let mut record = [0u8; flashgate_protocol::data_stream::MAX_RECORD_LEN];
        let (counter, n) = data.seal_telemetry(&mut self.board.flash, body, &mut record)?;
        self.send(msg::DATA_RECORD, &record[..n]);
        Ok(counter)
    }

    fn emit_event(&mut self, event: &str) -> Result<u32, ErrorCode> {
        let mut body = TextBuf::<128>::new();
        let ticks = self.uptime.poll();
        let _ = write!(
            body,
            "{event} uptime_ticks={ticks} apps_started={}",
            self.apps.started
        );
        self.emit_telemetry(body.as_bytes())
    }

    fn status(&mut self) {
        let mut payload = [0u8; 32];
        let ticks = self.uptime.poll();
        let (epoch, next) = self
            .data
            .as_ref()
            .map_or((0, 0), |d| (d.epoch(), d.next_counter()));
        let mut w = Writer::new(&mut payload);
        let _ = w.u64(ticks);
        let _ = w.u32(epoch);
        let _ = w.u32(next);
        let _ = w.u32(self.apps.started);
        let _ = w.u32(self.apps.version);
        let _ = w.u32(self.apps.last_status);
        let _ = w.u32(self.first_record_ticks);
        self.send(msg::OS_STATUS_REPLY, &payload);
    }

    fn handle(&mut self, server: &mut DeviceServer, msg_type: u8, payload: &[u8]) {
        let result = match msg_type {
            msg::DATA_EMIT => match payload {
                [count] => (0..*count).try_for_each(|_| self.emit_event("emit").map(|_| ())),
                _ => Err(ErrorCode::BadLength),
            },
            msg::DATA_ROTATE => self.rotate(),
            msg::OS_STATUS => {
                self.status();
                Ok(())
            }
            msg::APP_BEGIN | msg::APP_DATA | msg::APP_COMMIT | msg::APP_START => {
                apps::handle(self, msg_type, payload)
            }
            _ => match server.handle(msg_type, payload, &mut self.out) {
                Ok(len) => {
                    self.board.uart.write_all(&self.out[..len]);
                    Ok(())
                }
                Err(code) => Err(code),
            },
        };
        if let Err(code) = result {
            self.send_error(code);
        }
    }

    fn rotate(&mut self) -> Result<(), ErrorCode> {
        let data = self.data.as_mut().ok_or(ErrorCode::NotProvisioned)?;
        let mut record = [0u8; flashgate_protocol::data_stream::MAX_RECORD_LEN];
        let n = data.rotate(&mut self.board.flash, &mut record)?;
        self.send(msg::DATA_RECORD, &record[..n]);
        Ok(())
    }
}

#[no_mangle]
extern "C" fn main() -> ! {
    let Some(mut board) = Board::take() else {
        flashgate_board::cpu::system_reset()
    };
    let uptime = Uptime::start();
    // The bootloader verified header and body before starting us; here they are only read.
    let mut raw = [0u8; SIGNED_HEADER_LEN];
    let version = board
        .flash
        .read(OS_SLOT_ADDR, &mut raw)
        .ok()
        .and_then(|()| SignedImageHeader::parse(&raw).ok())
        .map_or(0, |signed| signed.header.version);
    let record = boot::read_device_record(&mut board.flash).ok();
    // Update path: this image runs, so it confirms itself (ends a trial, raises the floor).
    let boot = flashgate_protocol::update::install::confirm(&mut board.flash, version);
    let started = uptime.systick.now();
    let data = record
        .as_ref()
        .and_then(|r| data::DataStream::open(&mut board.flash, r).ok());
    let open_ticks = uptime.systick.ticks_since(started);

    let mut os = Os {
        board,
        uptime,
        data,
        apps: apps::AppState::default(),
        first_record_ticks: 0,
        out: [0; MAX_PAYLOAD + OVERHEAD],
    };
    let mut banner = TextBuf::<96>::new();
    let _ = write!(banner, "flashgate demo-os v{version} on {}", Board::NAME);
    os.send(msg::BOOT_BANNER, banner.as_bytes());
    // The first sealed record goes out before anyone asked for anything. Its cost (from
    // the journal read on, banner excluded) is reported in the status.
    let before_emit = os.uptime.systick.now();
    let _ = os.emit_event("boot");
    os.first_record_ticks = open_ticks + os.uptime.systick.ticks_since(before_emit);
    let mut next_heartbeat = os.uptime.poll() + HEARTBEAT_TICKS;

    let mut server = DeviceServer::new(record.as_ref(), DeviceState::OsRunning { version })
        .with_boot_state(boot.unwrap_or_default());
    let mut decoder = FrameDecoder::new();
    loop {
        if os.uptime.poll() >= next_heartbeat {
            next_heartbeat += HEARTBEAT_TICKS;
            let _ = os.emit_event("heartbeat");
        }
        let Some(byte) = os.board.uart.try_read() else {
            core::hint::spin_loop();
            continue;
        };
        match decoder.push(byte) {
            None => {}
            // Update path: hand over to the bootloader's update service.
            Some(Ok(update_msg::ENTER_UPDATE)) => {
                os.send(update_msg::UPDATE_MODE, &[]);
                flashgate_board::cpu::enter_bootloader_for_update()
            }
            Some(Ok(msg_type)) => os.handle(&mut server, msg_type, decoder.payload()),
            Some(Err(code)) => os.send_error(code),
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    flashgate_board::cpu::system_reset()
}
