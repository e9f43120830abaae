//! The board: its files, and the QEMU process that runs it.

use std::{
    ffi::OsString,
    fmt, fs,
    io::{Read, Seek, SeekFrom},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    cut::{self, Cut, CutReport, InstructionCut, Torn, CUT_REPORT_FILE},
    error::BoardError,
    layout::{DEBUG_LOCK_ADDR, DEBUG_LOCK_MAGIC, FLASH_SIZE, UNIQUE_ID_ADDR, UNIQUE_ID_LEN},
    network::{self, NetworkOptions},
    qmp::QmpConnection,
};

/// File name of the persisted code memory inside a board directory.
pub const FLASH_FILE: &str = "flash.bin";
/// File name of the board's unique ID inside a board directory.
pub const UID_FILE: &str = "uid.bin";
/// File name of QEMU's stderr log (last start) inside a board directory.
pub const LOG_FILE: &str = "qemu.log";

const FLASH_TMP_FILE: &str = "flash.bin.saving";
/// Attempts at finding free ports when parallel tests race for them.
const PORT_ATTEMPTS: usize = 8;

/// A board's unique ID (its serial number).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uid(pub [u8; UNIQUE_ID_LEN]);

impl Uid {
    /// A fresh random ID.
    pub fn random() -> Self {
        let mut bytes = [0u8; UNIQUE_ID_LEN];
        getrandom::getrandom(&mut bytes).expect("the OS random generator failed");
        Uid(bytes)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, BoardError> {
        let bytes = hex::decode(text.trim()).map_err(|_| BoardError::InvalidUid(text.into()))?;
        let bytes: [u8; UNIQUE_ID_LEN] = bytes
            .try_into()
            .map_err(|_| BoardError::InvalidUid(text.into()))?;
        Ok(Uid(bytes))
    }

    /// The board's Ethernet address: locally administered unicast (`02:…`), then the first
    /// five UID bytes, so boards differ as real devices' factory MACs do.
    pub fn mac_address(&self) -> [u8; 6] {
        let u = &self.0;
        [0x02, u[0], u[1], u[2], u[3], u[4]]
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({self})")
    }
}

/// The files of a board directory (no process involved).
#[derive(Debug, Clone)]
pub struct BoardFiles {
    dir: PathBuf,
}

impl BoardFiles {
    /// Refers to the board in `dir` (nothing is checked yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BoardFiles { dir: dir.into() }
    }

    /// The board directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the persisted code memory.
    pub fn flash_path(&self) -> PathBuf {
        self.dir.join(FLASH_FILE)
    }

    /// Path of the unique ID file.
    pub fn uid_path(&self) -> PathBuf {
        self.dir.join(UID_FILE)
    }

    /// Path of QEMU's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Path of the instruction-cut plugin's report (last start with a cut).
    pub fn cut_report_path(&self) -> PathBuf {
        self.dir.join(CUT_REPORT_FILE)
    }

    /// What the instruction-cut plugin reported so far (last start with a cut).
    pub fn cut_report(&self) -> Result<CutReport, BoardError> {
        CutReport::read(&self.cut_report_path())
    }

    /// Creates the directory and any missing file: an erased (all `0xFF`) flash and the given or a
    /// random UID. An existing board keeps its files; a `uid` that differs from an existing one
    /// is an error rather than a silent re-identification.
    pub fn create(&self, uid: Option<Uid>) -> Result<Uid, BoardError> {
        fs::create_dir_all(&self.dir).map_err(|source| BoardError::File {
            path: self.dir.clone(),
            source,
        })?;
        let flash = self.flash_path();
        if !flash.exists() {
            write_atomically(&flash, &vec![0xFF; FLASH_SIZE as usize])?;
        }
        let uid_path = self.uid_path();
        if uid_path.exists() {
            let existing = self.uid()?;
            if let Some(wanted) = uid {
                if wanted != existing {
                    return Err(BoardError::NotABoard {
                        path: uid_path,
                        detail: format!("the board already has UID {existing}, not {wanted}"),
                    });
                }
            }
            return Ok(existing);
        }
        let uid = uid.unwrap_or_else(Uid::random);
        write_atomically(&uid_path, &uid.0)?;
        Ok(uid)
    }

    /// Reads the board's UID.
    pub fn uid(&self) -> Result<Uid, BoardError> {
        let path = self.uid_path();
        let bytes = fs::read(&path).map_err(|source| BoardError::File {
            path: path.clone(),
            source,
        })?;
        let bytes: [u8; UNIQUE_ID_LEN] =
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| BoardError::NotABoard {
                    path,
                    detail: format!("{} bytes instead of {UNIQUE_ID_LEN}", b.len()),
                })?;
        Ok(Uid(bytes))
    }

    /// Reads `len` bytes of the persisted code memory at `addr` (as saved at the last power-off).
    pub fn read_flash(&self, addr: u32, len: usize) -> Result<Vec<u8>, BoardError> {
        let path = self.flash_path();
        let file_err = |source| BoardError::File {
            path: path.clone(),
            source,
        };
        let mut file = fs::File::open(&path).map_err(file_err)?;
        let size = file.metadata().map_err(file_err)?.len();
        if size != u64::from(FLASH_SIZE) {
            return Err(BoardError::NotABoard {
                path: path.clone(),
                detail: format!("{size} bytes instead of {FLASH_SIZE}"),
            });
        }
        file.seek(SeekFrom::Start(u64::from(addr)))
            .map_err(file_err)?;
        let mut out = vec![0; len];
        file.read_exact(&mut out).map_err(file_err)?;
        Ok(out)
    }

    /// True when the persisted code memory holds the debug-lock marker: the board then starts
    /// without a debug port.
    pub fn is_debug_locked(&self) -> Result<bool, BoardError> {
        let word = self.read_flash(DEBUG_LOCK_ADDR, 4)?;
        Ok(u32::from_le_bytes(word.try_into().expect("4 bytes")) == DEBUG_LOCK_MAGIC)
    }

    fn check(&self) -> Result<(), BoardError> {
        for path in [self.uid_path(), self.flash_path()] {
            if !path.exists() {
                return Err(BoardError::NotABoard {
                    path,
                    detail: "missing".into(),
                });
            }
        }
        self.uid()?;
        self.read_flash(0, 0)?;
        Ok(())
    }
}

/// How to start a board.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Deterministic instruction counting (`-icount shift=0`): 1 instruction = 1 ns.
    pub icount: bool,
    /// Ethernet that reaches only this machine; `None`: restricted user networking without
    /// forwards, which reaches nothing.
    pub network: Option<NetworkOptions>,
    /// Cut the power at an instruction count ([`cut`](crate::cut)); implies `icount`.
    pub instruction_cut: Option<InstructionCut>,
    /// Extra QEMU arguments, appended last.
    pub extra_args: Vec<OsString>,
    /// The QEMU binary.
    pub qemu: OsString,
    /// How long to wait for QEMU to come up, and for a QMP answer.
    pub timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            icount: false,
            network: None,
            instruction_cut: None,
            extra_args: Vec::new(),
            qemu: "qemu-system-arm".into(),
            timeout: Duration::from_secs(20),
        }
    }
}

struct Running {
    child: Child,
    gdb: Option<SocketAddr>,
    serial: SocketAddr,
    qmp: SocketAddr,
    frames: Option<SocketAddrV4>,
}

/// A board and, while powered, its QEMU process. Starts halted (`-S`): attach a debugger to the
/// gdb port, or call [`resume`](Self::resume). Dropping it kills QEMU without saving.
pub struct EmulatedBoard {
    files: BoardFiles,
    options: StartOptions,
    locked: bool,
    running: Option<Running>,
}

impl fmt::Debug for EmulatedBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedBoard")
            .field("dir", &self.files.dir)
            .field("locked", &self.locked)
            .field("gdb", &self.gdb_addr())
            .field("serial", &self.running.as_ref().map(|r| r.serial))
            .finish()
    }
}

impl EmulatedBoard {
    /// Creates a board directory (see [`BoardFiles::create`]).
    pub fn create(dir: impl Into<PathBuf>, uid: Option<Uid>) -> Result<Uid, BoardError> {
        BoardFiles::new(dir).create(uid)
    }

    /// Powers the board in `dir` on: QEMU starts halted, with a gdb port unless the persisted
    /// flash carries the debug-lock marker. Returns once QEMU answers on QMP (its gdb and serial
    /// sockets are listening by then).
    pub fn start(dir: impl Into<PathBuf>, options: StartOptions) -> Result<Self, BoardError> {
        let mut board = EmulatedBoard {
            files: BoardFiles::new(dir),
            options,
            locked: false,
            running: None,
        };
        board.power_on()?;
        Ok(board)
    }

    fn power_on(&mut self) -> Result<(), BoardError> {
        self.files.check()?;
        if let Some(network) = &self.options.network {
            network.validate()?;
        }
        self.locked = self.files.is_debug_locked()?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            match self.spawn_once() {
                Ok(running) => {
                    self.running = Some(running);
                    return Ok(());
                }
                Err(SpawnFailure::PortTaken(e)) => last_error = Some(e),
                Err(SpawnFailure::Fatal(e)) => return Err(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn spawn_once(&self) -> Result<Running, SpawnFailure> {
        let ports = free_ports(3).map_err(|source| {
            SpawnFailure::Fatal(BoardError::Start {
                detail: format!("no free local TCP port: {source}"),
                log: self.files.log_path(),
                tail: String::new(),
            })
        })?;
        let localhost = Ipv4Addr::LOCALHOST;
        let serial = SocketAddr::from((localhost, ports[0]));
        let qmp = SocketAddr::from((localhost, ports[1]));
        let gdb = (!self.locked).then(|| SocketAddr::from((localhost, ports[2])));
        let network = self.options.network.as_ref();
        let frames = match network.and_then(|n| n.frame_peer) {
            Some(_) => Some(network::free_udp_addr().map_err(|source| {
                SpawnFailure::Fatal(BoardError::Start {
                    detail: format!("no free local UDP port: {source}"),
                    log: self.files.log_path(),
                    tail: String::new(),
                })
            })?),
            None => None,
        };
        let uid = self.files.uid().map_err(SpawnFailure::Fatal)?;

        let log_path = self.files.log_path();
        let log = fs::File::create(&log_path).map_err(|source| {
            SpawnFailure::Fatal(BoardError::File {
                path: log_path.clone(),
                source,
            })
        })?;
        let flash = absolute(&self.files.flash_path());
        let uid_path = absolute(&self.files.uid_path());

        let mut cmd = Command::new(&self.options.qemu);
        cmd.args(["-M", "mps2-an386", "-nographic", "-S", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-device")
            .arg(loader_arg(&flash, 0))
            .arg("-device")
            .arg(loader_arg(&uid_path, UNIQUE_ID_ADDR))
            .arg("-serial")
            .arg(format!("tcp:{serial},server=on,wait=off"))
            .arg("-qmp")
            .arg(format!("tcp:{qmp},server=on,wait=off"));
        if let Some(gdb) = gdb {
            cmd.arg("-gdb").arg(format!("tcp:{gdb}"));
        }
        if self.options.icount || self.options.instruction_cut.is_some() {
            cmd.args(["-icount", "shift=0"]);
        }
        if let Some(cut) = &self.options.instruction_cut {
            let report = absolute(&self.files.cut_report_path());
            let _ = fs::remove_file(&report);
            cmd.args(cut.qemu_args(&report).map_err(SpawnFailure::Fatal)?);
        }
        match network {
            Some(network) => cmd.args(network.qemu_args(&uid, frames)),
            None => cmd.args(network::isolated_args()),
        };
        cmd.args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = cmd.spawn().map_err(|source| {
            SpawnFailure::Fatal(BoardError::Spawn {
                program: self.options.qemu.to_string_lossy().into_owned(),
                source,
            })
        })?;

        // QEMU opens every socket while parsing its options, before its main loop answers QMP:
        // a QMP handshake therefore means the gdb and serial ports listen too.
        let deadline = Instant::now() + self.options.timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(&log_path);
                let error = BoardError::Start {
                    detail: format!("qemu-system-arm exited with {status}"),
                    log: log_path.clone(),
                    tail: tail.clone(),
                };
                return Err(
                    if tail.contains("Address already in use") || tail.contains("Failed to bind") {
                        SpawnFailure::PortTaken(error)
                    } else {
                        SpawnFailure::Fatal(error)
                    },
                );
            }
            if QmpConnection::connect(qmp, Duration::from_millis(500)).is_ok() {
                return Ok(Running {
                    child,
                    gdb,
                    serial,
                    qmp,
                    frames,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnFailure::Fatal(BoardError::Start {
                    detail: format!("no QMP answer on {qmp} within {:?}", self.options.timeout),
                    log: log_path.clone(),
                    tail: log_tail(&log_path),
                }));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The board's files.
    pub fn files(&self) -> &BoardFiles {
        &self.files
    }

    /// The board directory.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// The board's unique ID.
    pub fn uid(&self) -> Result<Uid, BoardError> {
        self.files.uid()
    }

    /// Address of the debug port (gdbstub), or `None` when powered off or debug-locked.
    pub fn gdb_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.gdb)
    }

    /// Address of UART0 (a TCP server socket; one client at a time), `None` when powered off.
    pub fn serial_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.serial)
    }

    /// Address of QEMU's QMP socket, `None` when powered off.
    pub fn qmp_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.qmp)
    }

    /// The board's end of the frame link (a loopback UDP address: datagrams sent there reach
    /// the NIC as frames), when started with a [frame peer](NetworkOptions::frame_peer).
    pub fn frame_addr(&self) -> Option<SocketAddrV4> {
        self.running.as_ref().and_then(|r| r.frames)
    }

    /// True when the board was started with the debug-lock marker in flash (no debug port).
    pub fn is_debug_locked(&self) -> bool {
        self.locked
    }

    /// True while QEMU runs.
    pub fn is_powered(&mut self) -> bool {
        match &mut self.running {
            Some(r) => matches!(r.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The options the board was started with.
    pub fn options(&self) -> &StartOptions {
        &self.options
    }

    fn qmp(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<(), BoardError> {
        let running = self.running.as_ref().ok_or(BoardError::NotRunning)?;
        let result = QmpConnection::connect(running.qmp, self.options.timeout)
            .and_then(|mut conn| conn.execute(command, arguments));
        match result {
            Ok(_) => Ok(()),
            // QEMU gone (guest lockup, killed): say so rather than "connection refused".
            Err(detail) => Err(self.exited_error().unwrap_or_else(|| BoardError::Qmp {
                command: command.into(),
                detail,
                log: self.files.log_path(),
            })),
        }
    }

    /// If QEMU has exited: forget the process and describe how it ended.
    fn exited_error(&mut self) -> Option<BoardError> {
        let running = self.running.as_mut()?;
        let mut status = None;
        for _ in 0..20 {
            if let Ok(Some(s)) = running.child.try_wait() {
                status = Some(s);
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let status = status?;
        self.running = None;
        let log = self.files.log_path();
        Some(BoardError::Exited {
            status: status.to_string(),
            tail: log_tail(&log),
            log,
        })
    }

    /// Lets the CPU run (QMP `cont`): for boards that have no debugger attached.
    pub fn resume(&mut self) -> Result<(), BoardError> {
        self.qmp("cont", None)
    }

    /// Clean power-off: saves the code memory into `flash.bin` (through a temporary file and a
    /// rename, so a crash never leaves half a flash), then quits QEMU.
    pub fn power_off(&mut self) -> Result<(), BoardError> {
        let tmp = self.save_flash()?;
        // `quit` may close the socket before answering: its error is not a failure.
        let _ = self.qmp("quit", None);
        if let Some(mut running) = self.running.take() {
            wait_or_kill(&mut running.child, self.options.timeout);
        }
        self.commit_saved_flash(&tmp)
    }

    /// Waits for the [instruction cut](StartOptions::instruction_cut) to freeze the CPU, then
    /// saves the code memory exactly as it is, kills QEMU (a frozen CPU cannot `quit`) and,
    /// with `tear_seed`, models the operation in flight as torn ([`cut::tear`]).
    pub fn wait_for_cut(
        &mut self,
        timeout: Duration,
        tear_seed: Option<u64>,
    ) -> Result<(Cut, Torn), BoardError> {
        let not_reached = |detail: String, log: PathBuf| BoardError::CutNotReached { detail, log };
        if self.options.instruction_cut.is_none() {
            return Err(not_reached(
                "the board was started without an instruction cut".into(),
                self.files.log_path(),
            ));
        }
        let deadline = Instant::now() + timeout;
        let cut = loop {
            if let Some(cut) = self.files.cut_report()?.cut {
                break cut;
            }
            if !self.is_powered() {
                return Err(self.exited_error().unwrap_or_else(|| {
                    not_reached("QEMU exited first".into(), self.files.log_path())
                }));
            }
            if Instant::now() > deadline {
                let report = self.files.cut_report()?;
                return Err(not_reached(
                    format!("not within {timeout:?} (report so far: {report:?})"),
                    self.files.log_path(),
                ));
            }
            thread::sleep(Duration::from_millis(2));
        };
        let tmp = self.save_flash()?;
        self.kill();
        let torn = match tear_seed {
            Some(seed) => {
                let mut image = fs::read(&tmp).map_err(|source| BoardError::File {
                    path: tmp.clone(),
                    source,
                })?;
                let torn = cut::tear(&mut image, &cut, seed);
                fs::write(&tmp, &image).map_err(|source| BoardError::File {
                    path: tmp.clone(),
                    source,
                })?;
                torn
            }
            None => Torn::Nothing,
        };
        self.commit_saved_flash(&tmp)?;
        Ok((cut, torn))
    }

    /// Saves the code memory into the temporary flash file (QMP `pmemsave`: QEMU's main loop
    /// answers it even while the CPU is frozen).
    fn save_flash(&mut self) -> Result<PathBuf, BoardError> {
        let tmp = absolute(&self.files.dir.join(FLASH_TMP_FILE));
        let saved = self.qmp(
            "pmemsave",
            Some(json!({ "val": 0, "size": FLASH_SIZE, "filename": tmp.to_string_lossy() })),
        );
        if let Err(e) = saved {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// Checks the saved temporary flash file and renames it over `flash.bin`.
    fn commit_saved_flash(&self, tmp: &Path) -> Result<(), BoardError> {
        let size = fs::metadata(tmp).map(|m| m.len()).unwrap_or(0);
        if size != u64::from(FLASH_SIZE) {
            let _ = fs::remove_file(tmp);
            return Err(BoardError::Qmp {
                command: "pmemsave".into(),
                detail: format!(
                    "saved {size} bytes instead of {FLASH_SIZE}; flash.bin left as it was"
                ),
                log: self.files.log_path(),
            });
        }
        let flash = self.files.flash_path();
        fs::rename(tmp, &flash).map_err(|source| BoardError::File {
            path: flash,
            source,
        })
    }

    /// A power cut at this instant: freezes the CPU (QMP `stop`), saves the code memory as
    /// it is right now, and quits. Unlike [`power_off`](Self::power_off), nothing the guest
    /// would do next happens; the next start sees exactly the flash of that instant. Used to
    /// model a cut in the middle of an update (see `docs/protocol.md` §7).
    pub fn power_cut(&mut self) -> Result<(), BoardError> {
        self.qmp("stop", None)?;
        self.power_off()
    }

    /// Power-off (saving flash) and start again with the same options; the debug lock is read
    /// again from the saved flash, and the ports change.
    pub fn power_cycle(&mut self) -> Result<(), BoardError> {
        if self.running.is_some() {
            self.power_off()?;
        }
        self.power_on()
    }

    /// Starts a powered-off board again (same options) without saving anything first.
    pub fn power_on_again(&mut self) -> Result<(), BoardError> {
        if self.running.is_some() {
            return Ok(());
        }
        self.power_on()
    }

    /// Hard kill, no save: models yanking the power (or the probe) — writes since the last
    /// power-off are lost.
    pub fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

impl Drop for EmulatedBoard {
    fn drop(&mut self) {
        self.kill();
    }
}

enum SpawnFailure {
    PortTaken(BoardError),
    Fatal(BoardError),
}

fn loader_arg(file: &Path, addr: u32) -> OsString {
    // QEMU splits -device options on ',': a comma in the path is written ",,".
    let mut arg = OsString::from("loader,file=");
    arg.push(file.to_string_lossy().replace(',', ",,"));
    arg.push(format!(",addr={addr:#x},force-raw=on"));
    arg
}

/// Ports free right now (the listeners are dropped before QEMU binds: a race with other
/// processes is possible, hence the retry in `power_on`).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BoardError> {
    let tmp = path.with_extension("tmp");
    let file_err = |source| BoardError::File {
        path: path.to_path_buf(),
        source,
    };
    fs::write(&tmp, bytes).map_err(file_err)?;
    fs::rename(&tmp, path).map_err(file_err)
}

fn wait_or_kill(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of QEMU's log, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
