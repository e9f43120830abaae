use std::time::{Duration, Instant};

use flashgate_protocol::codec::Codec;
use flashgate_protocol::device_record::DeviceConfig;
use flashgate_protocol::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use flashgate_protocol::layout::{LOADER_BASE, LOADER_STACK_TOP, MAILBOX_ADDR, PARAMS_ADDR};
use flashgate_protocol::mailbox::{self, State};
use flashgate_protocol::provisioning::messages::{
    Receipt, StationMessage, TargetReply, MAX_IMAGE_CHUNK,
};
use flashgate_protocol::provisioning::station::{StationHandshake, StationSession};
use flashgate_protocol::provisioning::LoaderHello;
use flashgate_protocol::{ErrorCode, Serial};
use rand::RngCore;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::{LinkFault, LoaderImage, PhaseTimings, ProvisioningError};
use crate::probe::{BreakpointKind, HaltReason, Probe};

/// xPSR with only the Thumb bit: the state a Cortex-M core must run in.
const XPSR_THUMB: u32 = 0x0100_0000;
/// Mailbox bytes read after every turn: header and the start of `out` (a reply fits).
const FIRST_READ: usize = mailbox::HEADER_LEN + 64;

/// What to install on one target.
pub struct ProvisioningJob<'a> {
    /// The vendor-signed bootloader image (signed header, then body).
    pub bootloader: &'a [u8],
    /// Product the device becomes.
    pub product_id: u32,
    /// Vendor key the device will trust.
    pub vendor_public: [u8; 32],
    /// Lowest OS version the bootloader will accept.
    pub rollback_floor: u32,
    /// The device key for a serial (from the lease).
    pub device_key: &'a dyn Fn(&Serial) -> Zeroizing<[u8; 32]>,
    /// The vendor-signed factory test application to run after the install, if the order has one.
    pub test_app: Option<&'a [u8]>,
    /// Lock the debug port once the receipt (and the test, if any) passed.
    pub lock_debug_port: bool,
    /// Image bytes per frame (at most `MAX_IMAGE_CHUNK`).
    pub chunk_size: usize,
    /// Test-only traffic corruption.
    pub fault: Option<LinkFault>,
}

/// What the factory test application reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestAppReport {
    /// Failed checks (0 = pass).
    pub failed: u32,
    /// One line per check.
    pub log: String,
}

impl TestAppReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
}

/// A target that was provisioned and whose receipt verified.
#[derive(Clone, Debug)]
pub struct ProvisioningOutcome {
    /// The board's serial.
    pub serial: Serial,
    /// The loader's receipt.
    pub receipt: Receipt,
    /// The test application's result, if one ran.
    pub test: Option<TestAppReport>,
    /// Whether the debug port was locked (not when the test failed: the board goes to rework).
    pub locked: bool,
    /// Where the time went.
    pub timings: PhaseTimings,
}

/// A running flash loader on one target, driven turn by turn through the probe.
pub struct FlashLoaderSession<'p, P: Probe + ?Sized> {
    probe: &'p mut P,
    session: StationSession,
    yield_addr: u32,
    step_timeout: Duration,
    timings: PhaseTimings,
    frame_buf: Vec<u8>,
}

impl<'p, P: Probe + ?Sized> FlashLoaderSession<'p, P> {
    /// Halts the target, writes and starts the loader, and completes the key agreement.
    pub fn start(
        probe: &'p mut P,
        loader: &LoaderImage,
        step_timeout: Duration,
        fault: Option<LinkFault>,
    ) -> Result<Self, ProvisioningError> {
        let mut timings = PhaseTimings::default();
        let started = Instant::now();
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let station_key = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let handshake = StationHandshake::new(station_key, nonce);
        let params = handshake.params().to_bytes();
        let handshake = match fault {
            Some(LinkFault::ImpostorStationKey) => {
                StationHandshake::new(StaticSecret::random_from_rng(rand::rngs::OsRng), nonce)
            }
            _ => handshake,
        };
        let header = *loader.header();
        let yield_addr = header.host_yield & !1;
        timings.station += started.elapsed();

        let link = Instant::now();
        probe.halt()?;
        probe.write_memory(LOADER_BASE, loader.bytes())?;
        probe.write_memory(PARAMS_ADDR, &params)?;
        // A stale mailbox from an earlier run must not be mistaken for this loader's hello.
        probe.write_memory(MAILBOX_ADDR, &[0u8; mailbox::HEADER_LEN])?;
        let mut regs = probe.read_registers()?;
        regs.sp = LOADER_STACK_TOP;
        regs.pc = header.entry & !1;
        regs.lr = 0xFFFF_FFFF;
        regs.xpsr = XPSR_THUMB;
        probe.write_registers(&regs)?;
        probe.set_breakpoint(yield_addr, BreakpointKind::Hardware)?;
        timings.link += link.elapsed();

        let waited = Instant::now();
        probe.resume()?;
        let reason = probe.wait_for_halt(step_timeout)?;
        timings.target += waited.elapsed();
        let mut this = Self {
            probe,
            // Placeholder until the hello is read; replaced below before any use.
            session: placeholder_session(),
            yield_addr,
            step_timeout,
            timings,
            frame_buf: vec![0; mailbox::IN_MAX],
        };
        let (header, out) = this.read_turn("loader start", reason)?;
        if header.state != State::Hello {
            return Err(this.refusal("loader start", &header));
        }
        let hello =
            LoaderHello::read_bytes(&out).map_err(|code| ProvisioningError::Verification {
                what: "hello",
                code,
            })?;
        let t = Instant::now();
        this.session = handshake
            .complete(&hello, loader.digest())
            .map_err(|code| ProvisioningError::Verification {
                what: "hello",
                code,
            })?;
        this.timings.handshake_ticks = header.handshake_ticks;
        this.timings.station += t.elapsed();
        Ok(this)
    }

    /// The board's serial, from the loader hello.
    pub fn serial(&self) -> Serial {
        self.session.serial()
    }

    /// Time spent so far.
    pub fn timings(&self) -> PhaseTimings {
        self.timings
    }

    /// Seals `msg` and exchanges it with the loader.
    pub fn request(
        &mut self,
        step: &'static str,
        msg: &StationMessage<'_>,
    ) -> Result<TargetReply<'static>, ProvisioningError> {
        let frame = self.seal(msg)?;
        self.exchange(step, &frame)
    }

    fn seal(&mut self, msg: &StationMessage<'_>) -> Result<Vec<u8>, ProvisioningError> {
        let t = Instant::now();
        let n = self
            .session
            .seal(msg, &mut self.frame_buf)
            .map_err(|code| ProvisioningError::Verification {
                what: "request",
                code,
            })?;
        self.timings.station += t.elapsed();
        Ok(self.frame_buf[..n].to_vec())
    }

    /// Sends one already sealed frame and returns the opened reply (replies that borrow their
    /// buffer, like test logs, go through [`Self::exchange_with`]).
    fn exchange(
        &mut self,
        step: &'static str,
        frame: &[u8],
    ) -> Result<TargetReply<'static>, ProvisioningError> {
        self.exchange_with(step, frame, |reply| match reply {
            TargetReply::Ack {
                seq,
                bytes_programmed,
            } => Some(TargetReply::Ack {
                seq,
                bytes_programmed,
            }),
            TargetReply::Receipt(r) => Some(TargetReply::Receipt(r)),
            TargetReply::Locked { serial } => Some(TargetReply::Locked { serial }),
            TargetReply::TestResult { .. } => None,
        })?
        .ok_or_else(mismatch)
    }

    fn exchange_with<T>(
        &mut self,
        step: &'static str,
        frame: &[u8],
        map: impl FnOnce(TargetReply<'_>) -> T,
    ) -> Result<T, ProvisioningError> {
        let link = Instant::now();
        self.probe
            .write_memory(MAILBOX_ADDR + mailbox::IN_OFFSET as u32, frame)?;
        // state, error, out_len := 0 and in_len := frame length, in one write.
        let mut words = [0u8; 16];
        words[12..].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.probe
            .write_memory(MAILBOX_ADDR + mailbox::offset::STATE as u32, &words)?;
        self.timings.link += link.elapsed();

        let waited = Instant::now();
        self.probe
            .resume_from_breakpoint(self.yield_addr, BreakpointKind::Hardware)?;
        let reason = self.probe.wait_for_halt(self.step_timeout)?;
        self.timings.target += waited.elapsed();

        let (header, mut out) = self.read_turn(step, reason)?;
        self.timings.target_flash_ticks = u64::from(header.flash_ticks);
        self.timings.target_busy_ticks = u64::from(header.busy_ticks);
        if header.state != State::Reply {
            return Err(self.refusal(step, &header));
        }
        let t = Instant::now();
        let reply =
            self.session
                .open(&mut out)
                .map_err(|code| ProvisioningError::Verification {
                    what: "reply",
                    code,
                })?;
        self.timings.station += t.elapsed();
        Ok(map(reply))
    }

    /// After the target halted: checks why, reads the mailbox header and output.
    fn read_turn(
        &mut self,
        step: &'static str,
        reason: HaltReason,
    ) -> Result<(mailbox::Header, Vec<u8>), ProvisioningError> {
        if reason != HaltReason::Trap {
            let pc = self.probe.read_registers().map(|r| r.pc).unwrap_or(0);
            return Err(ProvisioningError::UnexpectedHalt { step, reason, pc });
        }
        let link = Instant::now();
        let mut buf = [0u8; FIRST_READ];
        self.probe.read_memory(MAILBOX_ADDR, &mut buf)?;
        let header =
            mailbox::Header::decode(&buf).map_err(|code| ProvisioningError::Verification {
                what: "mailbox",
                code,
            })?;
        let mut out = buf[mailbox::OUT_OFFSET..].to_vec();
        if header.out_len > out.len() {
            out.resize(header.out_len, 0);
            let rest_addr = MAILBOX_ADDR + FIRST_READ as u32;
            self.probe
                .read_memory(rest_addr, &mut out[FIRST_READ - mailbox::OUT_OFFSET..])?;
        }
        out.truncate(header.out_len);
        self.timings.link += link.elapsed();
        Ok((header, out))
    }

    fn refusal(&self, step: &'static str, header: &mailbox::Header) -> ProvisioningError {
        match (header.state, header.error) {
            (State::Error, Some(code)) => ProvisioningError::TargetRefused { step, code },
            (State::Error, None) => ProvisioningError::UnknownTargetError {
                step,
                raw: header.error_raw,
            },
            _ => ProvisioningError::Verification {
                what: "mailbox state",
                code: ErrorCode::UnexpectedMessage,
            },
        }
    }

    /// Key confirmation, device secrets, the bootloader image, commit; verifies the receipt.
    pub fn install(&mut self, job: &ProvisioningJob<'_>) -> Result<Receipt, ProvisioningError> {
        let signed = SignedImageHeader::parse(job.bootloader)
            .map_err(ProvisioningError::BadBootloaderImage)?;
        let body = &job.bootloader[SIGNED_HEADER_LEN..];
        if body.len() != signed.header.body_size as usize {
            return Err(ProvisioningError::BadBootloaderImage(
                ErrorCode::ImageIncomplete,
            ));
        }
        let confirm = self.session.key_confirm();
        self.request("key confirmation", &confirm)?;

        let serial = self.serial();
        let device_key = (job.device_key)(&serial);
        let config = DeviceConfig {
            serial,
            product_id: job.product_id,
            vendor_public: job.vendor_public,
            rollback_floor: job.rollback_floor,
            flags: 0,
        };
        self.request(
            "device secrets",
            &StationMessage::DeviceSecrets {
                config,
                device_key: &device_key,
            },
        )?;
        let header_bytes = signed.to_bytes();
        self.request(
            "bootloader header",
            &StationMessage::BeginBootloader {
                signed_header: &header_bytes,
            },
        )?;
        self.send_body(body, job.chunk_size.clamp(64, MAX_IMAGE_CHUNK), job.fault)?;

        let reply = self.request("commit", &StationMessage::Commit)?;
        let TargetReply::Receipt(receipt) = reply else {
            return Err(mismatch());
        };
        let expected_record = flashgate_protocol::device_record::DeviceRecord {
            config,
            device_key: *device_key,
            bootloader_version: signed.header.version,
            bootloader_size: signed.header.body_size,
            bootloader_digest: signed.header.body_digest,
        };
        if receipt.serial != serial
            || receipt.bootloader_digest != signed.header.body_digest
            || receipt.record_digest != expected_record.digest()
            || receipt.bootloader_version != signed.header.version
        {
            return Err(mismatch());
        }
        Ok(receipt)
    }

    fn send_body(
        &mut self,
        body: &[u8],
        chunk: usize,
        fault: Option<LinkFault>,
    ) -> Result<(), ProvisioningError> {
        let sent_len = match fault {
            Some(LinkFault::TruncateImage { bytes_missing }) => {
                body.len().saturating_sub(bytes_missing)
            }
            _ => body.len(),
        };
        let chunks: Vec<&[u8]> = body[..sent_len].chunks(chunk).collect();
        let mut i = 0;
        while i < chunks.len() {
            let offset = (i * chunk) as u32;
            let mut frame = self.seal(&StationMessage::ImageData {
                offset,
                data: chunks[i],
            })?;
            match fault {
                Some(LinkFault::FlipCiphertextBit { chunk: c }) if c == i => {
                    frame[flashgate_protocol::sealed_frame::HEADER_LEN + 10] ^= 0x10;
                }
                Some(LinkFault::SwapChunks { chunk: c }) if c == i && i + 1 < chunks.len() => {
                    let next = self.seal(&StationMessage::ImageData {
                        offset: offset + chunks[i].len() as u32,
                        data: chunks[i + 1],
                    })?;
                    self.exchange("image data", &next)?;
                    self.exchange("image data", &frame)?;
                    i += 2;
                    continue;
                }
                _ => {}
            }
            self.exchange("image data", &frame)?;
            if fault == Some(LinkFault::ReplayChunk { chunk: i }) {
                self.exchange("image data", &frame)?;
            }
            i += 1;
        }
        Ok(())
    }

    /// Sends the vendor-signed test application, has the loader verify and run it, and returns
    /// its result. A failing test is an `Ok` with `failed > 0`: the station decides.
    pub fn run_test_app(
        &mut self,
        signed_test_app: &[u8],
        chunk: usize,
    ) -> Result<TestAppReport, ProvisioningError> {
        let signed =
            SignedImageHeader::parse(signed_test_app).map_err(ProvisioningError::BadTestApp)?;
        let body = &signed_test_app[SIGNED_HEADER_LEN..];
        let header_bytes = signed.to_bytes();
        self.request(
            "test app header",
            &StationMessage::BeginTestApp {
                signed_header: &header_bytes,
            },
        )?;
        let chunk = chunk.clamp(64, MAX_IMAGE_CHUNK);
        for (i, data) in body.chunks(chunk).enumerate() {
            self.request(
                "test app data",
                &StationMessage::TestAppData {
                    offset: (i * chunk) as u32,
                    data,
                },
            )?;
        }
        let frame = self.seal(&StationMessage::RunTestApp)?;
        match self.exchange_with("test run", &frame, |reply| match reply {
            TargetReply::TestResult { failed, log } => Some(TestAppReport {
                failed,
                log: String::from_utf8_lossy(log).into_owned(),
            }),
            _ => None,
        })? {
            Some(report) => Ok(report),
            None => Err(mismatch()),
        }
    }

    /// Asks the loader to lock the debug port.
    pub fn lock_debug_port(&mut self) -> Result<(), ProvisioningError> {
        match self.request("debug lock", &StationMessage::LockDebugPort)? {
            TargetReply::Locked { serial } if serial == self.serial() => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// Halts the target where it is and removes the breakpoint (the session ends).
    pub fn finish(self) -> Result<PhaseTimings, ProvisioningError> {
        self.probe
            .clear_breakpoint(self.yield_addr, BreakpointKind::Hardware)?;
        Ok(self.timings)
    }
}

fn mismatch() -> ProvisioningError {
    ProvisioningError::Verification {
        what: "receipt",
        code: ErrorCode::ReceiptMismatch,
    }
}

fn placeholder_session() -> StationSession {
    // A session with throwaway keys, never used for traffic: `start` replaces it as soon as the
    // hello has been read, and returns an error (dropping it) otherwise.
    let hs = StationHandshake::new(StaticSecret::from([1; 32]), [0; 16]);
    let hello = LoaderHello {
        loader_public: x25519_dalek::PublicKey::from(&StaticSecret::from([2; 32])).to_bytes(),
        serial: [0; 16],
        loader_digest: [0; 32],
    };
    hs.complete(&hello, &[0; 32])
        .expect("fixed keys are contributory")
}

/// Runs the whole flow on one target: loader, handshake, install, optional lock.
pub fn provision<P: Probe + ?Sized>(
    probe: &mut P,
    loader: &LoaderImage,
    job: &ProvisioningJob<'_>,
    step_timeout: Duration,
) -> Result<ProvisioningOutcome, ProvisioningError> {
    let mut session = FlashLoaderSession::start(probe, loader, step_timeout, job.fault)?;
    let receipt = session.install(job)?;
    let test = match job.test_app {
        Some(app) => Some(session.run_test_app(app, job.chunk_size)?),
        None => None,
    };
    let lock = job.lock_debug_port && test.as_ref().is_none_or(TestAppReport::passed);
    if lock {
        session.lock_debug_port()?;
    }
    let serial = session.serial();
    let timings = session.finish()?;
    Ok(ProvisioningOutcome {
        serial,
        receipt,
        test,
        locked: lock,
        timings,
    })
}
