//! Unit tests of the client against the in-memory server.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    mock::{MockServer, Seen},
    packet::{hex_into, parse_hex_u64, unhex},
    parse_stop_reply, GdbProbe, GdbProbeOptions, ServerFeatures, TrafficRecorder,
};
use crate::probe::{BreakpointKind, CoreRegisters, HaltReason, Probe, ProbeError};

const BASE: u32 = 0x2000_0000;

/// A tiny target behind the mock server, QEMU-like by default.
struct SimTarget {
    packet_size: usize,
    max_read: usize,
    binary: bool,
    mem: Vec<u8>,
    regs: [u32; 17],
    extra_g: &'static [u8],
    legacy: bool,
    breakpoints: Vec<(u8, u32)>,
}

impl SimTarget {
    fn qemu_like() -> Self {
        SimTarget {
            packet_size: 0x1000,
            max_read: 2048,
            binary: false,
            mem: vec![0; 64 * 1024],
            regs: [0; 17],
            extra_g: b"",
            legacy: false,
            breakpoints: Vec::new(),
        }
    }

    fn addr_len(args: &[u8]) -> (usize, usize) {
        let text = std::str::from_utf8(args).unwrap();
        let (a, l) = text.split_once(',').unwrap();
        let a = parse_hex_u64(a.as_bytes()).unwrap() as usize;
        let l = parse_hex_u64(l.as_bytes()).unwrap() as usize;
        (a, l)
    }

    fn handle(&mut self, p: &[u8]) -> Vec<Vec<u8>> {
        assert!(
            p.len() + 4 <= self.packet_size,
            "client sent a {}-byte packet, over PacketSize",
            p.len() + 4
        );
        let reply: Vec<u8> = match p[0] {
            b'q' if p.starts_with(b"qSupported") => format!(
                "PacketSize={:x};qXfer:features:read+;vContSupported+",
                self.packet_size
            )
            .into_bytes(),
            b'q' if p.starts_with(b"qRcmd,") => {
                let cmd = unhex(&p[6..]).unwrap();
                assert_eq!(cmd, b"system_reset");
                self.regs[15] = 0x1234;
                let mut out = b"O".to_vec();
                hex_into(b"resetting\n", &mut out);
                return vec![out, b"OK".to_vec()];
            }
            b'?' => b"T05thread:p01.01;".to_vec(),
            b'm' => {
                let (a, l) = Self::addr_len(&p[1..]);
                if l > self.max_read {
                    b"E22".to_vec()
                } else if a < BASE as usize || a + l > BASE as usize + self.mem.len() {
                    b"E14".to_vec()
                } else {
                    let off = a - BASE as usize;
                    let mut out = Vec::new();
                    hex_into(&self.mem[off..off + l], &mut out);
                    out
                }
            }
            b'M' => {
                let colon = p.iter().position(|&b| b == b':').unwrap();
                let (a, l) = Self::addr_len(&p[1..colon]);
                let data = unhex(&p[colon + 1..]).unwrap();
                assert_eq!(data.len(), l);
                let off = a - BASE as usize;
                self.mem[off..off + l].copy_from_slice(&data);
                b"OK".to_vec()
            }
            b'X' if self.binary => {
                let colon = p.iter().position(|&b| b == b':').unwrap();
                let (a, l) = Self::addr_len(&p[1..colon]);
                // The payload reached us already unescaped by the decoder.
                let data = &p[colon + 1..];
                assert_eq!(data.len(), l);
                let off = a - BASE as usize;
                self.mem[off..off + l].copy_from_slice(data);
                b"OK".to_vec()
            }
            b'g' if self.legacy => {
                let mut out = Vec::new();
                for r in &self.regs[..16] {
                    hex_into(&r.to_le_bytes(), &mut out);
                }
                out.extend(std::iter::repeat_n(b'0', 8 * 24 + 8));
                hex_into(&self.regs[16].to_le_bytes(), &mut out);
                out
            }
            b'G' if self.legacy => {
                assert_eq!(p.len(), 1 + 336);
                let words = unhex(&p[1..]).unwrap();
                for (r, le) in self.regs[..16].iter_mut().zip(words.chunks_exact(4)) {
                    *r = u32::from_le_bytes(le.try_into().unwrap());
                }
                self.regs[16] = u32::from_le_bytes(words[164..168].try_into().unwrap());
                b"OK".to_vec()
            }
            b'g' => {
                let mut out = Vec::new();
                for r in self.regs {
                    hex_into(&r.to_le_bytes(), &mut out);
                }
                out.extend_from_slice(self.extra_g);
                out
            }
            b'G' => {
                let words = unhex(&p[1..1 + 136]).unwrap();
                for (r, le) in self.regs.iter_mut().zip(words.chunks_exact(4)) {
                    *r = u32::from_le_bytes(le.try_into().unwrap());
                }
                assert_eq!(&p[1 + 136..], self.extra_g, "extra registers must be kept");
                b"OK".to_vec()
            }
            b'Z' | b'z' => {
                let kind = p[1] - b'0';
                let rest = std::str::from_utf8(&p[3..]).unwrap();
                let (addr, size) = rest.split_once(',').unwrap();
                assert_eq!(size, "2");
                let addr = parse_hex_u64(addr.as_bytes()).unwrap() as u32;
                if p[0] == b'Z' {
                    self.breakpoints.push((kind, addr));
                } else {
                    self.breakpoints.retain(|&b| b != (kind, addr));
                }
                b"OK".to_vec()
            }
            b'c' => return vec![],
            b's' => {
                self.regs[15] += 2;
                b"T05thread:p01.01;".to_vec()
            }
            b'\x03' => b"T02thread:p01.01;".to_vec(),
            _ => Vec::new(),
        };
        vec![reply]
    }
}

fn probe_with(
    target: SimTarget,
) -> (
    GdbProbe<MockServer>,
    Arc<Mutex<Seen>>,
    Arc<Mutex<SimTarget>>,
) {
    let target = Arc::new(Mutex::new(target));
    let t = target.clone();
    let (server, seen) = MockServer::new(move |p| t.lock().unwrap().handle(p));
    let options = GdbProbeOptions {
        timeout: Duration::from_millis(200),
        tap: None,
        ..GdbProbeOptions::default()
    };
    let probe = GdbProbe::over(server, "mock", options).expect("handshake");
    (probe, seen, target)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn parses_qsupported() {
    let f = ServerFeatures::parse(
        b"PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+",
    );
    assert_eq!(f.packet_size, 4096);
    assert!(f.target_description && f.vcont && !f.no_ack_mode);
    let f = ServerFeatures::parse(b"PacketSize=3fff;QStartNoAckMode+");
    assert_eq!(f.packet_size, 0x3fff);
    assert!(f.no_ack_mode);
    assert_eq!(ServerFeatures::parse(b"").packet_size, 256);
}

#[test]
fn parses_stop_replies() {
    assert_eq!(
        parse_stop_reply(b"T05thread:p01.01;"),
        Some(HaltReason::Trap)
    );
    assert_eq!(parse_stop_reply(b"S02"), Some(HaltReason::Interrupted));
    assert_eq!(parse_stop_reply(b"T0b"), Some(HaltReason::Signal(11)));
    assert_eq!(parse_stop_reply(b"W00"), Some(HaltReason::Exited(0)));
    assert_eq!(parse_stop_reply(b"X09"), Some(HaltReason::Terminated(9)));
    assert_eq!(parse_stop_reply(b"OK"), None);
    assert_eq!(parse_stop_reply(b"T"), None);
}

#[test]
fn hex_writes_stay_within_packet_size_and_roundtrip() {
    let (mut probe, seen, _) = probe_with(SimTarget::qemu_like());
    let data = pattern(10_000);
    probe.write_memory(BASE + 3, &data).unwrap();
    let mut back = vec![0; data.len()];
    probe.read_memory(BASE + 3, &mut back).unwrap();
    assert_eq!(back, data);
    let seen = seen.lock().unwrap();
    let writes: Vec<_> = seen.packets.iter().filter(|p| p[0] == b'M').collect();
    // 2036 data bytes fit a 4096-byte packet with "$M20000003,7f4:" and "#cs".
    assert_eq!(writes.len(), 5);
    assert!(writes.iter().all(|p| p.len() + 4 <= 4096));
    assert!(
        seen.packets.iter().any(|p| p.starts_with(b"X20000003,0:")),
        "X probed once"
    );
}

#[test]
fn reads_retry_smaller_after_error() {
    let mut target = SimTarget::qemu_like();
    target.packet_size = 0x4000; // advertises 8 KiB reads, accepts only 2 KiB like QEMU
    target.mem[..5000].copy_from_slice(&pattern(5000));
    let (mut probe, seen, _) = probe_with(target);
    let mut buf = vec![0; 5000];
    probe.read_memory(BASE, &mut buf).unwrap();
    assert_eq!(buf, pattern(5000));
    let reads: Vec<_> = seen
        .lock()
        .unwrap()
        .packets
        .iter()
        .filter(|p| p[0] == b'm')
        .map(|p| String::from_utf8(p.clone()).unwrap())
        .collect();
    assert_eq!(reads[0], "m20000000,1388");
    assert!(reads.contains(&"m20000000,800".to_string()), "{reads:?}");
}

#[test]
fn a_real_fault_is_reported_with_the_address() {
    let (mut probe, _, _) = probe_with(SimTarget::qemu_like());
    let mut buf = [0; 16];
    let err = probe.read_memory(0x1000_0000, &mut buf).unwrap_err();
    assert!(
        matches!(err, ProbeError::ErrorReply { code: 0x14, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("0x10000000"), "{err}");
    // The read size recovers for later reads.
    probe.read_memory(BASE, &mut [0; 4000]).unwrap();
}

#[test]
fn binary_writes_are_escaped_and_used_when_supported() {
    let mut target = SimTarget::qemu_like();
    target.binary = true;
    target.packet_size = 300;
    let (mut probe, seen, _) = probe_with(target);
    // Full of bytes that need escaping.
    let data: Vec<u8> = (0..2000)
        .map(|i| [b'#', b'$', b'}', b'*', i as u8][i % 5])
        .collect();
    probe.write_memory(BASE, &data).unwrap();
    let mut back = vec![0; data.len()];
    probe.read_memory(BASE, &mut back).unwrap();
    assert_eq!(back, data);
    let seen = seen.lock().unwrap();
    assert!(seen.packets.iter().any(|p| p[0] == b'X' && p.len() > 20));
    assert!(!seen.packets.iter().any(|p| p[0] == b'M'));
}

#[test]
fn registers_roundtrip_and_keep_extra_registers() {
    let mut target = SimTarget::qemu_like();
    target.extra_g = b"0011223344556677";
    let (mut probe, _, sim) = probe_with(target);
    let mut regs = CoreRegisters::default();
    for (i, r) in regs.r.iter_mut().enumerate() {
        *r = 0x1000_0000 + i as u32;
    }
    regs.sp = 0x2000_8000;
    regs.lr = 0xFFFF_FFF9;
    regs.pc = 0x2000_0101;
    regs.xpsr = 0x0100_0000;
    probe.write_registers(&regs).unwrap();
    assert_eq!(sim.lock().unwrap().regs[13], 0x2000_8000);
    assert_eq!(probe.read_registers().unwrap(), regs);
}

#[test]
fn registers_in_the_legacy_fpa_layout() {
    let mut target = SimTarget::qemu_like();
    // r0-r15 answered by the sim, then FPA f0-f7, fps: xPSR must land in the last word.
    target.extra_g = b"";
    let (mut probe, _, sim) = probe_with(target);
    sim.lock().unwrap().legacy = true;
    let regs = CoreRegisters {
        pc: 0x2000_0100,
        xpsr: 0x0100_0000,
        ..CoreRegisters::default()
    };
    probe.write_registers(&regs).unwrap();
    assert_eq!(sim.lock().unwrap().regs[16], 0x0100_0000);
    assert_eq!(probe.read_registers().unwrap(), regs);
}

#[test]
fn breakpoints_step_and_resume_from_breakpoint() {
    let (mut probe, seen, sim) = probe_with(SimTarget::qemu_like());
    probe
        .set_breakpoint(0x2000_0010, BreakpointKind::Hardware)
        .unwrap();
    probe
        .set_breakpoint(0x2000_0020, BreakpointKind::Software)
        .unwrap();
    assert_eq!(
        sim.lock().unwrap().breakpoints,
        vec![(1, 0x2000_0010), (0, 0x2000_0020)]
    );
    probe
        .resume_from_breakpoint(0x2000_0010, BreakpointKind::Hardware)
        .unwrap();
    assert!(probe.is_running());
    let order: Vec<_> = seen
        .lock()
        .unwrap()
        .packets
        .iter()
        .rev()
        .take(4)
        .rev()
        .cloned()
        .collect();
    assert_eq!(
        order,
        vec![
            b"z1,20000010,2".to_vec(),
            b"s".to_vec(),
            b"Z1,20000010,2".to_vec(),
            b"c".to_vec()
        ]
    );
    // While running, memory access is refused instead of silently stopping the target.
    let err = probe.read_memory(BASE, &mut [0; 4]).unwrap_err();
    assert!(matches!(err, ProbeError::TargetRunning { .. }), "{err}");
    // Nothing halts it: the wait times out and names the operation.
    let err = probe.wait_for_halt(Duration::from_millis(30)).unwrap_err();
    assert!(
        err.to_string().contains("waiting for the target to halt"),
        "{err}"
    );
    assert_eq!(probe.halt().unwrap(), HaltReason::Interrupted);
    assert_eq!(seen.lock().unwrap().interrupts, 1);
    assert!(!probe.is_running());
}

#[test]
fn reset_goes_through_monitor() {
    let (mut probe, _, sim) = probe_with(SimTarget::qemu_like());
    probe.reset().unwrap();
    assert_eq!(sim.lock().unwrap().regs[15], 0x1234);
    assert_eq!(probe.monitor("system_reset").unwrap(), "resetting\n");
}

#[test]
fn bad_checksum_is_nacked_and_recovered() {
    let target = Arc::new(Mutex::new(SimTarget::qemu_like()));
    let t = target.clone();
    let (mut server, _) = MockServer::new(move |p| t.lock().unwrap().handle(p));
    server.corrupt_next = true;
    let mut probe = GdbProbe::over(server, "mock", GdbProbeOptions::default()).unwrap();
    probe.read_memory(BASE, &mut [0; 8]).unwrap();
}

#[test]
fn closed_connection_is_an_error_not_a_hang() {
    let target = Arc::new(Mutex::new(SimTarget::qemu_like()));
    let t = target.clone();
    let (mut server, _) = MockServer::new(move |p| t.lock().unwrap().handle(p));
    server.close_after = Some(5); // qSupported, ?, then a few reads
    let mut probe = GdbProbe::over(server, "127.0.0.1:1234", GdbProbeOptions::default()).unwrap();
    let mut buf = vec![0; 20_000];
    let err = probe.read_memory(BASE, &mut buf).unwrap_err();
    assert!(err.is_link_lost(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1234 closed the connection"),
        "{text}"
    );
    assert!(text.contains("is QEMU/OpenOCD still running?"), "{text}");
    // And it stays an error.
    assert!(probe.read_registers().is_err());
}

#[test]
fn tap_sees_every_byte() {
    let recorder = TrafficRecorder::new();
    let target = Arc::new(Mutex::new(SimTarget::qemu_like()));
    let t = target.clone();
    let (server, _) = MockServer::new(move |p| t.lock().unwrap().handle(p));
    let options = GdbProbeOptions {
        tap: Some(Arc::new(recorder.clone())),
        ..GdbProbeOptions::default()
    };
    let mut probe = GdbProbe::over(server, "mock", options).unwrap();
    let secret = *b"\x5e\xc7\x03t-key!";
    assert!(!recorder.carries(&secret));
    probe.write_memory(BASE, &secret).unwrap();
    assert!(recorder.carries(&secret));
    let sent = recorder.bytes(super::Direction::Sent);
    assert!(sent.starts_with(b"$qSupported"));
}
