//! Faults on the debug link, kept out of the station's production types (as probe-rs keeps its
//! `FakeProbe` apart): [`FaultyProbe`] wraps a real probe and tampers with what the station
//! writes, the way an attacker sitting on the SWD wire (or the factory network in front of a
//! GDB server) could. Each fault is one the real loader must refuse on a real QEMU board.

use flashgate_protocol::codec::Codec;
use flashgate_protocol::layout::{LOADER_BASE, MAILBOX_ADDR, PARAMS_ADDR};
use flashgate_protocol::mailbox;
use flashgate_protocol::provisioning::ParamBlock;
use flashgate_protocol::sealed_frame;
use flashgate_station::fixture::BoxedProbe;
use flashgate_station::probe::{Probe, ProbeResult};
use x25519_dalek::{PublicKey, StaticSecret};

/// Frames the station writes before the first image chunk: key confirmation, device secrets,
/// bootloader header.
pub const FRAMES_BEFORE_IMAGE: usize = 3;

/// The mailbox frame that carries image chunk `chunk` (0-based) of the bootloader.
pub fn image_frame(chunk: usize) -> usize {
    FRAMES_BEFORE_IMAGE + chunk
}

/// A fault on the debug link. Frames are counted in the order the station writes them into the
/// loader's mailbox (0 = key confirmation; see [`image_frame`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFault {
    /// Flip one bit of the ciphertext of frame `frame`.
    FlipCiphertextBit {
        /// Which frame.
        frame: usize,
    },
    /// Deliver frame `frame` a second time in place of the frame after it.
    ReplayFrame {
        /// Which frame.
        frame: usize,
    },
    /// Rewrite the station key in the parameter block with another one: the loader then
    /// agrees keys with someone the station is not.
    ImpostorStationKey,
    /// Cut the target's power as the station writes frame `frame` (a board yanked mid-transfer).
    KillTargetAtFrame {
        /// Which frame.
        frame: usize,
    },
    /// Flip one bit of the loader image as the station writes it into RAM (a flaky link, or a
    /// write that did not land where the station thinks).
    CorruptLoaderWrite,
}

/// Cuts a board's power (from the probe's thread).
pub type PowerCut = Box<dyn FnMut() + Send>;

/// A probe that injects one [`LinkFault`] into the traffic of the probe it wraps.
pub struct FaultyProbe {
    inner: BoxedProbe,
    fault: LinkFault,
    power_cut: Option<PowerCut>,
    frames: usize,
    replayed: Option<Vec<u8>>,
    /// The length word the next mailbox state write must carry (the frame was swapped).
    in_len: Option<usize>,
}

impl FaultyProbe {
    /// Wraps `inner`; `power_cut` is what [`LinkFault::KillTargetAtFrame`] calls.
    pub fn new(inner: BoxedProbe, fault: LinkFault, power_cut: Option<PowerCut>) -> Self {
        Self {
            inner,
            fault,
            power_cut,
            frames: 0,
            replayed: None,
            in_len: None,
        }
    }

    fn frame_written(&mut self, frame: &[u8]) -> ProbeResult<()> {
        let n = self.frames;
        self.frames += 1;
        let addr = MAILBOX_ADDR + mailbox::IN_OFFSET as u32;
        match self.fault {
            LinkFault::FlipCiphertextBit { frame: f } if f == n => {
                let mut tampered = frame.to_vec();
                tampered[sealed_frame::HEADER_LEN + 10] ^= 0x10;
                self.inner.write_memory(addr, &tampered)
            }
            LinkFault::ReplayFrame { frame: f } if f == n => {
                self.replayed = Some(frame.to_vec());
                self.inner.write_memory(addr, frame)
            }
            LinkFault::ReplayFrame { frame: f } if f + 1 == n => {
                let old = self.replayed.take().expect("the replayed frame was seen");
                self.in_len = Some(old.len());
                self.inner.write_memory(addr, &old)
            }
            LinkFault::KillTargetAtFrame { frame: f } if f == n => {
                if let Some(cut) = self.power_cut.as_mut() {
                    tracing::warn!("fault injection: killing the target mid-transfer");
                    cut();
                }
                self.inner.write_memory(addr, frame)
            }
            _ => self.inner.write_memory(addr, frame),
        }
    }
}

impl Probe for FaultyProbe {
    crate::forward_probe!(
        halt,
        resume,
        wait_for_halt,
        step,
        reset,
        read_memory,
        read_registers,
        write_registers,
        set_breakpoint,
        clear_breakpoint,
        resume_from_breakpoint,
        monitor,
        read_memory_while_running,
    );
    fn write_memory(&mut self, addr: u32, data: &[u8]) -> ProbeResult<()> {
        if addr == MAILBOX_ADDR + mailbox::IN_OFFSET as u32 {
            return self.frame_written(data);
        }
        if addr == MAILBOX_ADDR + mailbox::offset::STATE as u32 && data.len() == 16 {
            if let Some(len) = self.in_len.take() {
                let mut words = data.to_vec();
                words[12..].copy_from_slice(&(len as u32).to_le_bytes());
                return self.inner.write_memory(addr, &words);
            }
        }
        if addr == LOADER_BASE && self.fault == LinkFault::CorruptLoaderWrite {
            let mut image = data.to_vec();
            let last = image.len() - 1;
            image[last / 2] ^= 0x10;
            return self.inner.write_memory(addr, &image);
        }
        if addr == PARAMS_ADDR && self.fault == LinkFault::ImpostorStationKey {
            let mut params =
                ParamBlock::read_bytes(data).expect("the station writes a parameter block");
            let impostor = StaticSecret::random_from_rng(rand::rngs::OsRng);
            params.station_public = PublicKey::from(&impostor).to_bytes();
            return self.inner.write_memory(addr, &params.to_bytes());
        }
        self.inner.write_memory(addr, data)
    }
}
