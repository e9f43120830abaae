//! flashgate's demo OS: the image the bootloader starts from the OS slot.
//!
//! - Sends a boot banner frame, then at once its first sealed data record (no round trip:
//!   the keys come from the device key, the counter from the flash journal), see [`data`].
//! - Serves the UART through the protocol crate's `uart::OsService` (hello with "OS running"
//!   and the version from its own signed header, status receipts, app installs, the hand-over
//!   to the bootloader for updates) and carries out what it leaves to the OS: its data stream,
//!   its status, calling an app.
//! - With the feature `net`, also streams every sealed record over the network, straight to
//!   the coordinator's data ingest, see [`uplink`].
//! - Starts installed applications with a function call through a call table, without a
//!   reset, see [`apps`].
#![no_std]
#![no_main]

mod apps;
mod data;
mod down;
#[cfg(feature = "net")]
mod uplink;

use core::fmt::Write as _;

use flashgate_board::cpu::SysTickCounter;
use flashgate_board::mps2_an386::{CodeFlash, Uart0};
use flashgate_board::{Board, NorFlash, SerialPort, UniqueId};
use flashgate_protocol::boot;
use flashgate_protocol::data_stream::DownKind;
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::OS_SLOT_ADDR;
use flashgate_protocol::uart::service::AppStats;
use flashgate_protocol::uart::{
    encode_frame, DeviceMessage, FrameDecoder, OsAction, OsService, OsStatus, MAX_FRAME,
};
use flashgate_protocol::ErrorCode;

use flashgate_board::text::TextBuf;

flashgate_board::vector_table!();
// The keys this image pins, filled by the signing tool (protocol `trust_anchors`).
flashgate_board::trust_anchors!();

/// A telemetry record every 2^26 ticks (about 2.7 s at 25 MHz), until a down message sets
/// another interval.
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
    flash: CodeFlash,
    uart: Uart0,
    /// The network link of the records (feature `net`), when the controller came up.
    #[cfg(feature = "net")]
    uplink: Option<uplink::Uplink>,
    uptime: Uptime,
    data: Option<data::DataStream>,
    /// The down window (a provisioned device only).
    down: Option<down::DownLink>,
    /// Ticks between two heartbeat records (a down message may change it).
    heartbeat_ticks: u64,
    /// Ticks the first sealed record took (journal reservation + key derivation + seal + send).
    first_record_ticks: u32,
    out: [u8; MAX_FRAME],
}

impl Os {
    /// Sends one frame on the UART (records, logs: the ones the OS sends itself).
    pub fn send(&mut self, msg: &DeviceMessage<'_>) {
        if let Ok(len) = encode_frame(msg, &mut self.out) {
            self.uart.write_all(&self.out[..len]);
        }
    }

    /// Sends a sealed record on the UART and (feature `net`) on the network uplink: one frame,
    /// the same bytes on both.
    fn send_record(&mut self, record: &[u8]) {
        let Ok(len) = encode_frame(&DeviceMessage::DataRecord(record), &mut self.out) else {
            return;
        };
        self.uart.write_all(&self.out[..len]);
        #[cfg(feature = "net")]
        if let Some(uplink) = self.uplink.as_mut() {
            uplink.queue(&self.out[..len]);
        }
    }

    fn send_error(&mut self, code: ErrorCode) {
        self.send(&DeviceMessage::Error(code));
    }

    /// Seals `body` as a telemetry record and sends it; returns its counter.
    pub fn emit_telemetry(&mut self, body: &[u8]) -> Result<u32, ErrorCode> {
        let data = self.data.as_mut().ok_or(ErrorCode::NotProvisioned)?;
        let mut record = [0u8; flashgate_protocol::data_stream::MAX_RECORD_LEN];
        let (counter, n) = data.seal_telemetry(&mut self.flash, body, &mut record)?;
        self.send_record(&record[..n]);
        Ok(counter)
    }

    fn emit_event(&mut self, event: &str, apps: AppStats) -> Result<u32, ErrorCode> {
        let mut body = TextBuf::<128>::new();
        let ticks = self.uptime.poll();
        let down_refused = self.down.as_ref().map_or(0, down::DownLink::refused);
        let _ = write!(
            body,
            "{event} uptime_ticks={ticks} apps_started={} down_refused={down_refused}",
            apps.started
        );
        self.emit_telemetry(body.as_bytes())
    }

    fn status(&mut self, apps: AppStats) {
        let (epoch, next_counter) = self
            .data
            .as_ref()
            .map_or((0, 0), |d| (d.epoch(), d.next_counter()));
        let status = OsStatus {
            uptime_ticks: self.uptime.poll(),
            epoch,
            next_counter,
            apps_started: apps.started,
            app_version: apps.version,
            last_app_status: apps.last_status,
            first_record_ticks: self.first_record_ticks,
        };
        self.send(&DeviceMessage::OsStatusReply(status));
    }

    fn rotate(&mut self) -> Result<(), ErrorCode> {
        let data = self.data.as_mut().ok_or(ErrorCode::NotProvisioned)?;
        let mut record = [0u8; flashgate_protocol::data_stream::MAX_RECORD_LEN];
        let n = data.rotate(&mut self.flash, &mut record)?;
        self.send_record(&record[..n]);
        Ok(())
    }

    /// A down message from either link: opened, checked, its window persisted, then carried
    /// out and acknowledged by a sealed record naming its counter; a refusal is counted and
    /// reported the same way. Both are shown on the UART.
    fn down_message(
        &mut self,
        mut message: flashgate_protocol::data_stream::down::SealedDown,
        service: &OsService<'_>,
    ) {
        let Some(link) = self.down.as_mut() else {
            self.send_error(ErrorCode::NotProvisioned);
            return;
        };
        let bytes = message.as_mut_slice();
        let mut line = TextBuf::<160>::new();
        let mut ack = TextBuf::<96>::new();
        let mut check_update = false;
        let mut status_challenge = None;
        match link.receive(&mut self.flash, bytes) {
            Ok(accepted) => {
                let (epoch, counter) = (accepted.header.epoch, accepted.header.counter);
                let body = &bytes[accepted.body];
                let _ = write!(line, "down {epoch}:{counter} {}", accepted.kind.name());
                match accepted.kind {
                    DownKind::Text => {
                        let _ = write!(line, ": {}", core::str::from_utf8(body).unwrap_or("?"));
                    }
                    DownKind::RecordInterval => {
                        let seconds = u32::from_le_bytes(body.try_into().unwrap_or_default());
                        let seconds = seconds.clamp(1, 3600);
                        self.heartbeat_ticks = u64::from(seconds) * u64::from(Board::CORE_CLOCK_HZ);
                        let _ = write!(line, " {seconds} s");
                    }
                    DownKind::CheckUpdate => check_update = true,
                    DownKind::StatusRequest => status_challenge = body.try_into().ok(),
                }
                let _ = write!(ack, "down-ack {epoch}:{counter} {}", accepted.kind.name());
            }
            Err(refused) => {
                let (epoch, counter) = refused
                    .header
                    .map_or((0, 0), |h| (h.epoch, h.counter));
                let code = refused.code as u32;
                let _ = write!(
                    line,
                    "down {epoch}:{counter} refused {code:#06x} ({} refused since boot)",
                    refused.total
                );
                let _ = write!(
                    ack,
                    "down-refused {epoch}:{counter} {code:#06x} refused={}",
                    refused.total
                );
            }
        }
        self.send(&DeviceMessage::DownLog(line.as_bytes()));
        if let Err(code) = self.emit_telemetry(ack.as_bytes()) {
            self.send_error(code);
        }
        if let Some(challenge) = status_challenge {
            // The receipt goes where the request may have come from: the network (the
            // coordinator verifies it against its challenge) and the UART.
            let uart = &mut self.uart;
            #[cfg(feature = "net")]
            let uplink = &mut self.uplink;
            let mut sink = |frame: &[u8]| {
                uart.write_all(frame);
                #[cfg(feature = "net")]
                if let Some(uplink) = uplink.as_mut() {
                    uplink.queue(frame);
                }
            };
            if let Err(code) = service.status_receipt(&challenge, &mut sink) {
                self.send_error(code);
            }
        }
        if check_update {
            // The ack leaves before the hand-over (the bootloader does not keep the socket).
            #[cfg(feature = "net")]
            if let Some(uplink) = self.uplink.as_mut() {
                uplink.drain();
            }
            flashgate_board::cpu::enter_bootloader_for_update();
        }
    }

    /// Carries out what the UART service left to the OS.
    fn act(&mut self, action: OsAction, service: &mut OsService<'_>) {
        let result = match action {
            OsAction::Continue => Ok(()),
            // Update path: hand over to the bootloader's update service.
            OsAction::EnterBootloader => flashgate_board::cpu::enter_bootloader_for_update(),
            OsAction::EmitTelemetry { count } => {
                let apps = service.app_stats();
                (0..count).try_for_each(|_| self.emit_event("emit", apps).map(drop))
            }
            OsAction::RotateEpoch => self.rotate(),
            OsAction::ReportStatus => {
                self.status(service.app_stats());
                Ok(())
            }
            OsAction::StartApp(app) => {
                let status = apps::start(self, &app);
                service.app_returned(&app, status, &mut self.uart);
                Ok(())
            }
            OsAction::DownMessage(message) => {
                self.down_message(message, service);
                Ok(())
            }
        };
        if let Err(code) = result {
            self.send_error(code);
        }
    }
}

/// The boot checks failed: nothing runs (no data stream, no apps); every request is answered
/// with why, so a host (`flashgate device verify`, the station) learns the reason.
fn refuse(mut board: Board, reason: ErrorCode) -> ! {
    let mut out = [0u8; MAX_FRAME];
    let mut send = |board: &mut Board, msg: &DeviceMessage<'_>| {
        if let Ok(len) = encode_frame(msg, &mut out) {
            board.uart.write_all(&out[..len]);
        }
    };
    send(&mut board, &DeviceMessage::Error(reason));
    let mut decoder = FrameDecoder::new();
    loop {
        let byte = board.uart.read();
        if decoder.push(byte).is_some() {
            send(&mut board, &DeviceMessage::Error(reason));
        }
    }
}

#[allow(unsafe_code, reason = "the runtime's Reset calls `main` by name")]
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
    let chip_uid = board.uid.unique_id();
    if let Some(record) = &record {
        // The same checks as the bootloader's, under this image's own anchors: a genuine OS
        // started by a foreign (or patched) bootloader, or from a copied flash, refuses too.
        if let Err(reason) = flashgate_board::rt::trust_anchors()
            .and_then(|anchors| boot::check_identity(record, &chip_uid, &anchors))
        {
            refuse(board, reason)
        }
    }
    // Update path: this image runs, so it confirms itself (ends a trial, raises the floor).
    let boot = flashgate_protocol::update::install::confirm(&mut board.flash, version);
    let started = uptime.systick.now();
    let data = record
        .as_ref()
        .and_then(|r| data::DataStream::open(&mut board.flash, r).ok());
    let open_ticks = uptime.systick.ticks_since(started);
    let down = record
        .as_ref()
        .and_then(|r| down::DownLink::open(&mut board.flash, r).ok());

    #[cfg(feature = "net")]
    let Board {
        flash,
        uart,
        eth,
        mut entropy,
        ..
    } = board;
    #[cfg(not(feature = "net"))]
    let Board { flash, uart, .. } = board;
    let mut os = Os {
        flash,
        uart,
        // Only a provisioned device has records to send.
        #[cfg(feature = "net")]
        uplink: data
            .as_ref()
            .and_then(|_| uplink::Uplink::up(eth, &mut entropy).ok()),
        uptime,
        data,
        down,
        heartbeat_ticks: HEARTBEAT_TICKS,
        first_record_ticks: 0,
        out: [0; MAX_FRAME],
    };
    let mut banner = TextBuf::<96>::new();
    let _ = write!(banner, "flashgate demo-os v{version} on {}", Board::NAME);
    os.send(&DeviceMessage::BootBanner(banner.as_bytes()));
    // The first sealed record goes out before anyone asked for anything. Its cost (from
    // the journal read on, banner excluded) is reported in the status.
    let before_emit = os.uptime.systick.now();
    let _ = os.emit_event("boot", AppStats::default());
    os.first_record_ticks = open_ticks + os.uptime.systick.ticks_since(before_emit);
    let mut next_heartbeat = os.uptime.poll() + os.heartbeat_ticks;

    let mut service = OsService::new(record.as_ref(), chip_uid, version, boot.unwrap_or_default());
    let mut decoder = FrameDecoder::new();
    loop {
        #[cfg(feature = "net")]
        if let Some(message) = os.uplink.as_mut().and_then(uplink::Uplink::poll) {
            os.down_message(message, &service);
        }
        let now = os.uptime.poll();
        if now >= next_heartbeat {
            next_heartbeat = now + os.heartbeat_ticks;
            let _ = os.emit_event("heartbeat", service.app_stats());
        }
        let Some(byte) = os.uart.try_read() else {
            core::hint::spin_loop();
            continue;
        };
        let Some(frame) = decoder.push(byte) else {
            continue;
        };
        let action = service.handle(frame, &mut os.flash, &mut os.uart);
        os.act(action, &mut service);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    flashgate_board::cpu::system_reset()
}
