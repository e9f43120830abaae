//! The flash loader's side of provisioning: one state machine, driven frame by frame.
//!
//! The firmware only moves bytes between the mailbox and [`LoaderSession::handle`]; every
//! decision (ordering, verification, what gets written where and when) is made here, where
//! host tests exercise it against [`RamFlash`](crate::flash::RamFlash).
//!
//! Nothing becomes bootable before `Commit` has checked the whole image: the device-record page
//! is erased when a bootloader transfer begins, and the first 8 bytes of the bootloader (initial
//! stack pointer and reset vector) are kept in RAM and programmed last. On any error the session
//! is over, the secrets are wiped and the partly written bootloader is erased.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::messages::MAX_TEST_LOG;
use super::messages::{Receipt, StationMessage, TargetReply};
use super::{LoaderHello, ParamBlock};
use crate::device_record::{DeviceConfig, DeviceRecord};
use crate::flash::LoaderPlatform;
use crate::image::{BodyHasher, ImageHeader, ImageKind, SignedImageHeader};
use crate::key_schedule::{SessionKeys, Transcript};
use crate::layout::{
    BOOTLOADER_BASE, BOOTLOADER_MAX, DEVICE_RECORD_ADDR, TEST_APP_ADDR, TEST_APP_MAX,
};
use crate::sealed_frame;
use crate::{ErrorCode, Serial};

/// Bytes at the start of the bootloader held back until commit (initial SP, reset vector).
const VECTOR_HEAD_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    AwaitKeyConfirm,
    AwaitDeviceSecrets,
    AwaitBootloader,
    ReceivingBootloader,
    Committed,
    ReceivingTestApp,
    TestDone,
    Locked,
    Failed,
}

struct TestAppTransfer {
    header: ImageHeader,
    hasher: BodyHasher,
}

struct BootloaderTransfer {
    header: ImageHeader,
    hasher: BodyHasher,
    vector_head: [u8; VECTOR_HEAD_LEN],
}

/// The loader's session with one station.
pub struct LoaderSession {
    keys: SessionKeys,
    serial: Serial,
    recv_seq: u32,
    send_seq: u32,
    step: Step,
    config: Option<DeviceConfig>,
    device_key: Zeroizing<[u8; 32]>,
    transfer: Option<BootloaderTransfer>,
    test_app: Option<TestAppTransfer>,
    /// How far into the bootloader region flash has been erased, for clean-up on failure.
    erased_until: u32,
}

impl LoaderSession {
    /// Starts a session from the station's parameter block and writes the loader hello into
    /// `hello_out`. `ephemeral_secret` must be fresh entropy for every run.
    pub fn start(
        params: &[u8],
        serial: Serial,
        loader_digest: [u8; 32],
        ephemeral_secret: [u8; 32],
        hello_out: &mut [u8],
    ) -> Result<(Self, usize), ErrorCode> {
        let params = ParamBlock::decode(params)?;
        let secret = StaticSecret::from(ephemeral_secret);
        let loader_public = PublicKey::from(&secret).to_bytes();
        let transcript = Transcript {
            station_public: params.station_public,
            loader_public,
            serial,
            job_nonce: params.job_nonce,
            loader_digest,
        };
        let keys = SessionKeys::derive(&secret, &params.station_public, &transcript)?;
        let hello = LoaderHello {
            loader_public,
            serial,
            loader_digest,
        };
        let n = hello.encode(hello_out)?;
        Ok((
            Self {
                keys,
                serial,
                recv_seq: 0,
                send_seq: 0,
                step: Step::AwaitKeyConfirm,
                config: None,
                device_key: Zeroizing::new([0; 32]),
                transfer: None,
                test_app: None,
                erased_until: 0,
            },
            n,
        ))
    }

    /// True once the bootloader and device record are written and bootable.
    pub fn is_committed(&self) -> bool {
        matches!(
            self.step,
            Step::Committed | Step::ReceivingTestApp | Step::TestDone | Step::Locked
        )
    }

    /// Handles one sealed frame from the station (decrypted in place in `frame`) and writes the
    /// sealed reply into `reply_out`, returning its length. After an error the session refuses
    /// everything with [`ErrorCode::SessionAborted`].
    pub fn handle<P: LoaderPlatform>(
        &mut self,
        frame: &mut [u8],
        platform: &mut P,
        reply_out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        if self.step == Step::Failed {
            return Err(ErrorCode::SessionAborted);
        }
        match self.step(frame, platform, reply_out) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.abort(platform);
                Err(e)
            }
        }
    }

    fn abort<P: LoaderPlatform>(&mut self, platform: &mut P) {
        self.step = Step::Failed;
        self.config = None;
        *self.device_key = [0; 32];
        if self.transfer.take().is_some() && self.erased_until > 0 {
            // Do not leave plaintext bootloader pieces readable through the still-open debug
            // port. Best effort: the record page is already erased, so nothing boots anyway.
            let _ = platform.erase_range(BOOTLOADER_BASE, self.erased_until);
        }
    }

    fn step<P: LoaderPlatform>(
        &mut self,
        frame: &mut [u8],
        platform: &mut P,
        reply_out: &mut [u8],
    ) -> Result<usize, ErrorCode> {
        let opened =
            sealed_frame::open_in_place(&self.keys.station_to_target, self.recv_seq, frame);
        let range = match opened {
            Err(ErrorCode::BadTag) if self.step == Step::AwaitKeyConfirm => {
                return Err(ErrorCode::KeyConfirmationFailed)
            }
            other => other?,
        };
        let seq = self.recv_seq;
        self.recv_seq += 1;
        let mut report = [0u8; 8 + MAX_TEST_LOG];
        let reply = match StationMessage::decode(&frame[range])? {
            StationMessage::KeyConfirm { transcript_hash } => {
                self.expect(Step::AwaitKeyConfirm)?;
                if transcript_hash != self.keys.transcript_hash {
                    return Err(ErrorCode::KeyConfirmationFailed);
                }
                self.step = Step::AwaitDeviceSecrets;
                self.ack(seq)
            }
            StationMessage::DeviceSecrets { config, device_key } => {
                self.expect(Step::AwaitDeviceSecrets)?;
                if config.serial != self.serial {
                    return Err(ErrorCode::WrongSerial);
                }
                self.config = Some(config);
                self.device_key.copy_from_slice(device_key);
                self.step = Step::AwaitBootloader;
                self.ack(seq)
            }
            StationMessage::BeginBootloader { signed_header } => {
                self.expect(Step::AwaitBootloader)?;
                self.begin_bootloader(signed_header, platform)?;
                self.ack(seq)
            }
            StationMessage::ImageData { offset, data } => {
                self.expect(Step::ReceivingBootloader)?;
                self.image_data(offset, data, platform)?;
                self.ack(seq)
            }
            StationMessage::Commit => {
                self.expect(Step::ReceivingBootloader)?;
                TargetReply::Receipt(self.commit(platform)?)
            }
            StationMessage::BeginTestApp { signed_header } => {
                self.expect(Step::Committed)?;
                self.begin_test_app(signed_header)?;
                self.ack(seq)
            }
            StationMessage::TestAppData { offset, data } => {
                self.expect(Step::ReceivingTestApp)?;
                let t = self.test_app.as_mut().ok_or(ErrorCode::UnexpectedMessage)?;
                if offset != t.hasher.received() {
                    return Err(ErrorCode::BadOffset);
                }
                t.hasher.update(data)?;
                platform.load_test_app(offset, data)?;
                self.ack(seq)
            }
            StationMessage::RunTestApp => {
                self.expect(Step::ReceivingTestApp)?;
                let t = self.test_app.take().ok_or(ErrorCode::UnexpectedMessage)?;
                t.hasher.finish(&t.header.body_digest)?;
                let failed = platform.run_test_app(&mut report)?;
                let log_len =
                    u32::from_le_bytes([report[4], report[5], report[6], report[7]]) as usize;
                self.step = Step::TestDone;
                TargetReply::TestResult {
                    failed,
                    log: &report[8..8 + log_len.min(MAX_TEST_LOG)],
                }
            }
            StationMessage::LockDebugPort => {
                if self.step != Step::TestDone {
                    self.expect(Step::Committed)?;
                }
                platform.lock_debug_port()?;
                self.step = Step::Locked;
                TargetReply::Locked {
                    serial: self.serial,
                }
            }
        };
        self.seal_reply(&reply, reply_out)
    }

    fn expect(&self, step: Step) -> Result<(), ErrorCode> {
        if self.step == step {
            Ok(())
        } else {
            Err(ErrorCode::UnexpectedMessage)
        }
    }

    fn ack(&self, seq: u32) -> TargetReply<'static> {
        TargetReply::Ack {
            seq,
            bytes_programmed: self.transfer.as_ref().map_or(0, |t| t.hasher.received()),
        }
    }

    fn begin_bootloader<P: LoaderPlatform>(
        &mut self,
        signed_header: &[u8],
        platform: &mut P,
    ) -> Result<(), ErrorCode> {
        let config = self.config.as_ref().ok_or(ErrorCode::UnexpectedMessage)?;
        let signed = SignedImageHeader::parse(signed_header)?;
        let header = *signed.verify(&config.vendor_public)?;
        SignedImageHeader::check_fits(
            &header,
            ImageKind::Bootloader,
            config.product_id,
            BOOTLOADER_BASE,
            BOOTLOADER_MAX,
            config.rollback_floor,
        )?;
        if (header.body_size as usize) < VECTOR_HEAD_LEN {
            return Err(ErrorCode::BadLength);
        }
        // Invalidate whatever was installed before, record first.
        platform.erase_page(DEVICE_RECORD_ADDR)?;
        self.transfer = Some(BootloaderTransfer {
            header,
            hasher: BodyHasher::new(header.body_size),
            vector_head: [0xFF; VECTOR_HEAD_LEN],
        });
        platform.erase_range(BOOTLOADER_BASE, header.body_size)?;
        self.erased_until = header.body_size;
        self.step = Step::ReceivingBootloader;
        Ok(())
    }

    fn begin_test_app(&mut self, signed_header: &[u8]) -> Result<(), ErrorCode> {
        let config = self.config.as_ref().ok_or(ErrorCode::UnexpectedMessage)?;
        let signed = SignedImageHeader::parse(signed_header)?;
        let header = *signed.verify(&config.vendor_public)?;
        SignedImageHeader::check_fits(
            &header,
            ImageKind::TestApp,
            config.product_id,
            TEST_APP_ADDR,
            TEST_APP_MAX,
            0,
        )?;
        self.test_app = Some(TestAppTransfer {
            header,
            hasher: BodyHasher::new(header.body_size),
        });
        self.step = Step::ReceivingTestApp;
        Ok(())
    }

    fn image_data<P: LoaderPlatform>(
        &mut self,
        offset: u32,
        data: &[u8],
        platform: &mut P,
    ) -> Result<(), ErrorCode> {
        let t = self.transfer.as_mut().ok_or(ErrorCode::UnexpectedMessage)?;
        if offset != t.hasher.received() {
            return Err(ErrorCode::BadOffset);
        }
        t.hasher.update(data)?;
        let mut data = data;
        let mut at = offset as usize;
        if at < VECTOR_HEAD_LEN {
            let n = (VECTOR_HEAD_LEN - at).min(data.len());
            t.vector_head[at..at + n].copy_from_slice(&data[..n]);
            data = &data[n..];
            at += n;
        }
        if !data.is_empty() {
            platform.program(BOOTLOADER_BASE + at as u32, data)?;
        }
        Ok(())
    }

    fn commit<P: LoaderPlatform>(&mut self, platform: &mut P) -> Result<Receipt, ErrorCode> {
        let t = self.transfer.as_ref().ok_or(ErrorCode::UnexpectedMessage)?;
        let header = t.header;
        let vector_head = t.vector_head;
        // Take the hasher out only after the checks above, so a failure still erases.
        let digest = {
            let t = self.transfer.as_mut().ok_or(ErrorCode::UnexpectedMessage)?;
            let hasher = core::mem::replace(&mut t.hasher, BodyHasher::new(0));
            hasher.finish(&header.body_digest)?
        };
        let config = self.config.ok_or(ErrorCode::UnexpectedMessage)?;
        let record = DeviceRecord {
            config,
            device_key: *self.device_key,
            bootloader_version: header.version,
            bootloader_size: header.body_size,
            bootloader_digest: digest,
        };
        platform.program(DEVICE_RECORD_ADDR, &record.encode())?;
        platform.program(BOOTLOADER_BASE, &vector_head)?;
        self.transfer = None;
        self.step = Step::Committed;
        Ok(Receipt {
            serial: self.serial,
            bootloader_digest: digest,
            record_digest: record.digest(),
            bootloader_version: header.version,
        })
    }

    fn seal_reply(&mut self, reply: &TargetReply, out: &mut [u8]) -> Result<usize, ErrorCode> {
        let body = out
            .get_mut(sealed_frame::HEADER_LEN..)
            .ok_or(ErrorCode::BadLength)?;
        let n = reply.encode(body)?;
        let len = sealed_frame::seal_in_place(&self.keys.target_to_station, self.send_seq, out, n)?;
        self.send_seq += 1;
        Ok(len)
    }
}
