//! The GDB client against a real QEMU `mps2-an386` gdbstub.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

mod support;

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use flashgate_station::probe::{
    BreakpointKind, CoreRegisters, GdbProbe, GdbProbeOptions, HaltReason, Probe, ProbeError,
    TrafficRecorder,
};
use support::qemu::BareQemu;

const RAM: u32 = 0x2000_0000;
const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(qemu: &BareQemu) -> GdbProbe {
    GdbProbe::connect(qemu.gdb, TIMEOUT).expect("connect to QEMU's gdbstub")
}

fn blob(len: usize, seed: u32) -> Vec<u8> {
    // xorshift: every byte value, including the ones GDB must escape.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn handshake_sees_qemu_features() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    assert_eq!(probe.features().packet_size, 0x1000);
    assert!(probe.features().target_description);
    assert!(
        !probe.binary_writes(RAM).unwrap(),
        "QEMU 7.2 has no X packet"
    );
    assert_eq!(probe.halt().unwrap(), HaltReason::Trap);
}

#[test]
fn writes_and_reads_256_kib() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    let data = blob(256 * 1024, 0x1234_5678);
    probe.write_memory(RAM + 1, &data).unwrap();
    let mut back = vec![0; data.len()];
    probe.read_memory(RAM + 1, &mut back).unwrap();
    assert!(back == data, "256 KiB read back differs");
    // Bytes around the blob are untouched.
    let mut edges = [0xAAu8; 2];
    probe.read_memory(RAM, &mut edges[..1]).unwrap();
    probe
        .read_memory(RAM + 1 + data.len() as u32, &mut edges[1..])
        .unwrap();
    assert_eq!(edges, [0, 0]);
    assert_eq!(
        probe.read_u32(RAM + 1).unwrap(),
        u32::from_le_bytes(data[..4].try_into().unwrap())
    );
}

#[test]
fn unmapped_memory_is_an_error_reply() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    let err = probe.read_memory(0xF000_0000, &mut [0; 8]).unwrap_err();
    assert!(matches!(err, ProbeError::ErrorReply { .. }), "{err}");
    // The link still works afterwards, with full-size reads.
    probe.read_memory(RAM, &mut vec![0; 8192]).unwrap();
}

#[test]
fn registers_set_and_get() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    let mut regs = probe.read_registers().unwrap();
    for (i, r) in regs.r.iter_mut().enumerate() {
        *r = 0xA000_0000 | (i as u32) << 8 | i as u32;
    }
    regs.sp = 0x2000_7FF0;
    regs.lr = 0x2000_0011;
    regs.pc = 0x2000_0040;
    regs.xpsr = 0x0100_0000;
    probe.write_registers(&regs).unwrap();
    let back = probe.read_registers().unwrap();
    assert_eq!(back, regs);
}

/// ```text
/// 0x00 start: movs r0, #0
/// 0x02 loop:  adds r0, #1
/// 0x04        bl   func
/// 0x08        b    loop
/// 0x0a func:  adds r1, #1
/// 0x0c        bx   lr
/// ```
const PROGRAM: [u8; 14] = [
    0x00, 0x20, 0x01, 0x30, 0x00, 0xF0, 0x01, 0xF8, 0xFB, 0xE7, 0x01, 0x31, 0x70, 0x47,
];
const FUNC: u32 = RAM + 0x0A;

fn load_program(probe: &mut GdbProbe) {
    probe.write_memory(RAM, &PROGRAM).unwrap();
    let regs = CoreRegisters {
        sp: RAM + 0x8000,
        pc: RAM,
        xpsr: 0x0100_0000,
        ..CoreRegisters::default()
    };
    probe.write_registers(&regs).unwrap();
}

fn breakpoint_stops_and_resumes(kind: BreakpointKind) {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    load_program(&mut probe);
    probe.set_breakpoint(FUNC, kind).unwrap();
    probe.resume().unwrap();
    assert_eq!(probe.wait_for_halt(TIMEOUT).unwrap(), HaltReason::Trap);
    let regs = probe.read_registers().unwrap();
    assert_eq!((regs.pc, regs.r[0], regs.r[1]), (FUNC, 1, 0));
    for round in 2..5 {
        probe.resume_from_breakpoint(FUNC, kind).unwrap();
        assert_eq!(probe.wait_for_halt(TIMEOUT).unwrap(), HaltReason::Trap);
        let regs = probe.read_registers().unwrap();
        assert_eq!((regs.pc, regs.r[0], regs.r[1]), (FUNC, round, round - 1));
    }
    // Without the breakpoint it runs until halted.
    probe.clear_breakpoint(FUNC, kind).unwrap();
    probe.resume().unwrap();
    let err = probe.wait_for_halt(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
    assert_eq!(probe.halt().unwrap(), HaltReason::Interrupted);
    assert!(probe.read_registers().unwrap().r[1] > 10);
}

#[test]
fn hardware_breakpoint_stop_and_resume() {
    breakpoint_stops_and_resumes(BreakpointKind::Hardware);
}

#[test]
fn software_breakpoint_stop_and_resume() {
    breakpoint_stops_and_resumes(BreakpointKind::Software);
}

#[test]
fn attaching_to_a_running_target_halts_it() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    load_program(&mut probe);
    probe.resume().unwrap();
    thread::sleep(Duration::from_millis(20));
    drop(probe); // the station goes away while the target runs
    for _ in 0..3 {
        let mut probe = connect(&qemu);
        let regs = probe.read_registers().unwrap();
        let before = regs.r[1];
        assert!(before > 0, "the program ran: {regs:x?}");
        assert_eq!(
            probe.read_registers().unwrap().r[1],
            before,
            "halted on attach"
        );
        probe.resume().unwrap();
        thread::sleep(Duration::from_millis(20));
        drop(probe);
    }
}

#[test]
fn single_step_advances_pc() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    load_program(&mut probe);
    assert_eq!(probe.step().unwrap(), HaltReason::Trap);
    assert_eq!(probe.read_registers().unwrap().pc, RAM + 2);
    probe.step().unwrap();
    probe.step().unwrap(); // the 32-bit bl
    let regs = probe.read_registers().unwrap();
    assert_eq!((regs.pc, regs.lr), (FUNC, (RAM + 8) | 1));
}

#[test]
fn reset_reloads_sp_and_pc_from_the_vector_table() {
    let qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    // Vector table at 0 (plain RAM on this board, nothing loaded over it).
    let mut table = Vec::new();
    table.extend_from_slice(&(RAM + 0x4000).to_le_bytes());
    table.extend_from_slice(&(RAM | 1).to_le_bytes());
    probe.write_memory(0, &table).unwrap();
    probe
        .write_registers(&CoreRegisters {
            pc: RAM + 0x100,
            sp: RAM + 0x100,
            xpsr: 0x0100_0000,
            ..CoreRegisters::default()
        })
        .unwrap();
    probe.reset().unwrap();
    let regs = probe.read_registers().unwrap();
    assert_eq!((regs.sp, regs.pc), (RAM + 0x4000, RAM));
}

#[test]
fn tap_records_the_traffic() {
    let qemu = BareQemu::start();
    let recorder = TrafficRecorder::new();
    let options = GdbProbeOptions {
        timeout: TIMEOUT,
        tap: Some(Arc::new(recorder.clone())),
        ..GdbProbeOptions::default()
    };
    let mut probe = GdbProbe::connect_with(qemu.gdb, options).unwrap();
    let secret = *b"do-not-leak-me!!";
    let public = *b"public bytes....";
    probe.write_memory(RAM, &public).unwrap();
    assert!(recorder.carries(&public));
    assert!(!recorder.carries(&secret));
    let mut back = [0; 16];
    probe.read_memory(RAM, &mut back).unwrap();
    assert_eq!(back, public);
}

#[test]
fn stub_disappearing_mid_read_is_an_error_not_a_hang() {
    let mut qemu = BareQemu::start();
    let mut probe = connect(&qemu);
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        qemu.kill();
    });
    let started = Instant::now();
    let mut buf = vec![0; 4 * 1024 * 1024];
    let err = loop {
        match probe.read_memory(RAM, &mut buf) {
            Ok(()) => assert!(started.elapsed() < TIMEOUT, "QEMU was never killed"),
            Err(e) => break e,
        }
    };
    killer.join().unwrap();
    assert!(err.is_link_lost(), "{err}");
    assert!(err.to_string().contains("closed the connection"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Later calls fail at once too.
    assert!(probe.read_registers().unwrap_err().is_link_lost());
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = GdbProbe::connect(port, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("is QEMU/OpenOCD running"), "{err}");
}
