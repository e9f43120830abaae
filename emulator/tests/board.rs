//! The launcher against a real QEMU.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use flashgate_emulator::{
    layout::{DEBUG_LOCK_ADDR, DEBUG_LOCK_MAGIC, FLASH_SIZE, UNIQUE_ID_ADDR},
    BoardError, BoardFiles, EmulatedBoard, StartOptions, Uid,
};

/// Just enough of the GDB remote protocol to poke memory (the station's client lives in
/// `flashgate-station`; the emulator must not depend on it).
struct RawGdb(TcpStream);

impl RawGdb {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("gdb port");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        RawGdb(s)
    }

    fn request(&mut self, payload: &str) -> String {
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        write!(self.0, "${payload}#{sum:02x}").unwrap();
        let mut got = Vec::new();
        let mut byte = [0];
        loop {
            self.0.read_exact(&mut byte).expect("gdb answer");
            got.push(byte[0]);
            if got.len() >= 3 && got[got.len() - 3] == b'#' {
                break;
            }
        }
        self.0.write_all(b"+").unwrap();
        let text = String::from_utf8(got).unwrap();
        let start = text.find('$').unwrap() + 1;
        text[start..text.len() - 3].to_string()
    }

    fn write(&mut self, addr: u32, data: &[u8]) {
        let reply = self.request(&format!("M{addr:x},{:x}:{}", data.len(), hex::encode(data)));
        assert_eq!(reply, "OK");
    }

    fn read(&mut self, addr: u32, len: usize) -> Vec<u8> {
        hex::decode(self.request(&format!("m{addr:x},{len:x}"))).unwrap()
    }
}

/// Vector table (SP, PC = 0x9) then `b .` at 0x8: a board that runs forever without faulting.
fn idle_firmware() -> Vec<u8> {
    let mut fw = Vec::new();
    fw.extend_from_slice(&0x2001_0000u32.to_le_bytes());
    fw.extend_from_slice(&0x0000_0009u32.to_le_bytes());
    fw.extend_from_slice(&[0xFE, 0xE7]);
    fw
}

fn new_board(uid: Option<Uid>) -> (tempfile::TempDir, Uid) {
    let dir = tempfile::tempdir().unwrap();
    let uid = EmulatedBoard::create(dir.path(), uid).unwrap();
    (dir, uid)
}

#[test]
fn create_makes_an_erased_flash_and_a_uid() {
    let given = Uid::from_hex("00112233445566778899aabbccddeeff").unwrap();
    let (dir, uid) = new_board(Some(given));
    assert_eq!(uid, given);
    let files = BoardFiles::new(dir.path());
    let flash = std::fs::read(files.flash_path()).unwrap();
    assert_eq!(flash.len(), FLASH_SIZE as usize);
    assert!(flash.iter().all(|&b| b == 0xFF));
    assert_eq!(files.uid().unwrap(), given);
    assert!(!files.is_debug_locked().unwrap());
    // Creating again keeps the board; another UID is refused.
    assert_eq!(EmulatedBoard::create(dir.path(), None).unwrap(), given);
    assert!(EmulatedBoard::create(dir.path(), Some(Uid::random())).is_err());
    // Random UIDs differ.
    let (_d1, a) = new_board(None);
    let (_d2, b) = new_board(None);
    assert_ne!(a, b);
}

#[test]
fn flash_written_through_gdb_survives_a_power_cycle() {
    let (dir, uid) = new_board(None);
    let mut board = EmulatedBoard::start(dir.path(), StartOptions::default()).unwrap();
    let mut gdb = RawGdb::connect(board.gdb_addr().expect("unlocked board has a gdb port"));
    assert_eq!(
        gdb.read(UNIQUE_ID_ADDR, 16),
        uid.0,
        "UID loaded at its address"
    );
    assert_eq!(gdb.read(0x1000, 4), [0xFF; 4], "erased flash");
    gdb.write(0x1000, b"persist me");
    gdb.write(FLASH_SIZE - 4, &[1, 2, 3, 4]);
    drop(gdb);
    board.power_off().unwrap();
    assert!(board.gdb_addr().is_none());
    let files = BoardFiles::new(dir.path());
    assert_eq!(files.read_flash(0x1000, 10).unwrap(), b"persist me");
    assert_eq!(files.read_flash(FLASH_SIZE - 4, 4).unwrap(), [1, 2, 3, 4]);

    board.power_cycle().unwrap();
    let mut gdb = RawGdb::connect(board.gdb_addr().unwrap());
    assert_eq!(gdb.read(0x1000, 10), b"persist me");
    assert_eq!(gdb.read(UNIQUE_ID_ADDR, 16), uid.0);
}

#[test]
fn kill_loses_unsaved_writes() {
    let (dir, _) = new_board(None);
    let mut board = EmulatedBoard::start(dir.path(), StartOptions::default()).unwrap();
    let mut gdb = RawGdb::connect(board.gdb_addr().unwrap());
    gdb.write(0x2000, b"saved");
    drop(gdb);
    board.power_cycle().unwrap();
    let mut gdb = RawGdb::connect(board.gdb_addr().unwrap());
    gdb.write(0x2000, b"lost!");
    drop(gdb);
    board.kill();
    assert!(!board.is_powered());
    board.power_on_again().unwrap();
    let mut gdb = RawGdb::connect(board.gdb_addr().unwrap());
    assert_eq!(gdb.read(0x2000, 5), b"saved");
}

#[test]
fn a_debug_locked_board_refuses_the_debug_link() {
    let (dir, _) = new_board(None);
    let mut board = EmulatedBoard::start(dir.path(), StartOptions::default()).unwrap();
    let gdb_addr = board.gdb_addr().unwrap();
    let mut gdb = RawGdb::connect(gdb_addr);
    gdb.write(0, &idle_firmware());
    gdb.write(DEBUG_LOCK_ADDR, &DEBUG_LOCK_MAGIC.to_le_bytes());
    drop(gdb);
    assert!(
        !board.is_debug_locked(),
        "the lock takes effect at the next power-on"
    );
    board.power_cycle().unwrap();
    assert!(board.is_debug_locked());
    assert!(board.gdb_addr().is_none());
    assert!(board.serial_addr().is_some());
    // Nothing listens where the gdb port was, and the board still runs without a debugger.
    assert!(TcpStream::connect_timeout(&gdb_addr, Duration::from_millis(300)).is_err());
    board.resume().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(board.is_powered(), "the locked firmware runs");
    board.power_off().unwrap();
    assert!(BoardFiles::new(dir.path()).is_debug_locked().unwrap());
}

#[test]
fn serial_port_accepts_a_client() {
    let (dir, _) = new_board(None);
    let mut board = EmulatedBoard::start(
        dir.path(),
        StartOptions {
            icount: true,
            ..StartOptions::default()
        },
    )
    .unwrap();
    let mut gdb = RawGdb::connect(board.gdb_addr().unwrap());
    gdb.write(0, &idle_firmware());
    drop(gdb);
    board.power_cycle().unwrap();
    let serial = TcpStream::connect_timeout(&board.serial_addr().unwrap(), Duration::from_secs(2));
    assert!(serial.is_ok());
    board.resume().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    board.power_off().unwrap();
}

#[test]
fn an_erased_board_that_runs_crashes_and_says_so() {
    let (dir, _) = new_board(None);
    let mut board = EmulatedBoard::start(dir.path(), StartOptions::default()).unwrap();
    // QEMU may die before it even answers `cont`.
    if let Err(e) = board.resume() {
        assert!(matches!(e, BoardError::Exited { .. }), "{e}");
        return;
    }
    // Erased flash: PC 0xFFFFFFFE, fault, lockup, and QEMU 7.2 aborts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while board.is_powered() {
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU kept running an erased board"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = board.power_off().unwrap_err();
    assert!(matches!(err, BoardError::Exited { .. }), "{err}");
    // The register dump QEMU prints after the reason can push "Lockup" out of the error's
    // log tail, so look in the whole log.
    let log = std::fs::read_to_string(board.files().log_path()).unwrap();
    assert!(log.contains("Lockup"), "{err}\n{log}");
}

#[test]
fn qemu_errors_carry_the_log_tail() {
    let (dir, _) = new_board(None);
    let options = StartOptions {
        extra_args: vec!["-no-such-option".into()],
        ..StartOptions::default()
    };
    let err = EmulatedBoard::start(dir.path(), options).unwrap_err();
    assert!(matches!(err, BoardError::Start { .. }), "{err}");
    assert!(err.to_string().contains("no-such-option"), "{err}");
}

#[test]
fn a_directory_without_a_board_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = EmulatedBoard::start(dir.path(), StartOptions::default()).unwrap_err();
    assert!(err.to_string().contains("flashgate-board create"), "{err}");
}

/// Stores 0, 1, 2, … into consecutive words from 0x1000 on, four instructions per store.
fn counting_firmware() -> Vec<u8> {
    let mut fw = Vec::new();
    fw.extend_from_slice(&0x2001_0000u32.to_le_bytes());
    fw.extend_from_slice(&0x0000_0009u32.to_le_bytes());
    // movs r0,#0x10; lsls r0,r0,#8; movs r1,#0; loop: str r1,[r0]; adds r0,#4; adds r1,#1; b loop
    for insn in [0x2010u16, 0x0200, 0x2100, 0x6001, 0x3004, 0x3101, 0xE7FB] {
        fw.extend_from_slice(&insn.to_le_bytes());
    }
    fw
}

#[test]
fn an_instruction_cut_freezes_the_board_at_that_instruction_every_time() {
    use flashgate_emulator::cut::{FlashStore, InstructionCut, Torn};
    let (dir, _) = new_board(None);
    let mut flash = vec![0xFFu8; FLASH_SIZE as usize];
    flash[..counting_firmware().len()].copy_from_slice(&counting_firmware());
    let files = BoardFiles::new(dir.path());
    let words = |files: &BoardFiles| {
        let bytes = files.read_flash(0x1000, 4 * 400).unwrap();
        bytes
            .chunks(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect::<Vec<_>>()
    };
    // Armed by the store of 0 at 0x1000; store k is instruction 4k after it, so a cut before
    // instruction 1001 leaves stores 0..=250 done and nothing after.
    let mut seen = Vec::new();
    for _ in 0..2 {
        std::fs::write(files.flash_path(), &flash).unwrap();
        let options = StartOptions {
            instruction_cut: Some(InstructionCut::at(0x1000..0x2000, 1001)),
            ..StartOptions::default()
        };
        let mut board = EmulatedBoard::start(dir.path(), options).unwrap();
        board.resume().unwrap();
        let (cut, torn) = board.wait_for_cut(Duration::from_secs(20), None).unwrap();
        assert_eq!(cut.count, 1001);
        assert_eq!(
            cut.pc, 0x10,
            "the cut instruction is `adds r0,#4` after a store"
        );
        let store = FlashStore {
            addr: 0x1000 + 4 * 250,
            size: 4,
            count: 1000,
        };
        assert_eq!(cut.last_store, Some(store));
        assert_eq!(torn, Torn::Nothing, "not asked to tear");
        assert!(!board.is_powered());
        let got = words(&files);
        assert!((0..=250).all(|k| got[k] == k as u32), "{:?}", &got[..8]);
        assert!(got[251..].iter().all(|w| *w == u32::MAX));
        seen.push(std::fs::read(files.flash_path()).unwrap());
    }
    assert!(
        seen[0] == seen[1],
        "the same cut point leaves the same flash"
    );

    // Measuring only: the board runs on; a clean power-off reports the count.
    std::fs::write(files.flash_path(), &flash).unwrap();
    let options = StartOptions {
        instruction_cut: Some(InstructionCut::measure(0x1000..0x2000)),
        ..StartOptions::default()
    };
    let mut board = EmulatedBoard::start(dir.path(), options).unwrap();
    board.resume().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    board.power_off().unwrap();
    let report = board.files().cut_report().unwrap();
    assert_eq!(report.armed_at, Some(0x1000));
    let (count, last_store) = report.end.expect("reported at exit");
    assert!(count > 1000 && last_store <= count, "{report:?}");
    assert_eq!(last_store % 4, 0, "stores are every fourth instruction");
}
