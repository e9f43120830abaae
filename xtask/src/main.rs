//! flashgate's build tasks. `cargo xtask firmware [--check]` builds the Cortex-M firmware.
//!
//! The firmware (`device-fw/`) is its own Cargo workspace with its own `.cargo/config.toml`
//! (target, linker, `link.x`) and its own target dir (`device-fw/target`), so this only picks a
//! toolchain, runs cargo in that folder and packages the results in `target/firmware/` (with
//! the C demo OS, which `make` builds from `device-fw/c-demo-os/`):
//!
//! 1. rustup with `thumbv7em-none-eabi` installed: plain `cargo build` (prebuilt `core`).
//! 2. otherwise Debian's `rustc`/`cargo` (`/usr/bin`, packages `rustc-web`, `cargo-web`,
//!    `rust-web-src`) with `RUSTC_BOOTSTRAP=1`, which enables the `[unstable] build-std` table
//!    of `device-fw/.cargo/config.toml` to build `core` from source. rustup's proxies are kept
//!    out of that build (explicit `RUSTC`/`CARGO`, `/usr/bin` first on `PATH`).
//! 3. neither: an error that says to run `scripts/setup.sh`.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use flashgate_protocol::image::ImageKind;
use flashgate_protocol::layout;
use flashgate_protocol::mailbox;
use flashgate_protocol::provisioning::LoaderImageHeader;
use flashgate_protocol::trust_anchors;

const TARGET: &str = "thumbv7em-none-eabi";
/// (binary name, what it is) in build order.
const PROGRAMS: &[(&str, &str)] = &[
    ("loader", "RAM flash loader"),
    ("bootloader", "secure bootloader"),
    ("demo-os", "demo OS"),
    ("test-app", "RAM test app"),
    ("demo-app", "demo application"),
    ("crypto-bench", "field-life bench"),
    ("net-check", "network check"),
    ("bootloader-net", "bootloader + net"),
    ("demo-os-net", "demo OS + net"),
];

/// The loader and the crypto bench that measures its primitives (one feature set).
const LOADER_BUILD: &[&str] = &["-p", "flashgate-loader", "-p", "flashgate-crypto-bench"];
/// The bootloader that also fetches its updates over the network (feature `net`), written as
/// `bootloader-net`: its own build, as features are unified over the packages of one build.
const NET_BOOTLOADER_BUILD: &[&str] = &["-p", "flashgate-bootloader", "--features", "net"];
/// The demo OS that also streams its records over the network (feature `net`), written as
/// `demo-os-net`, for the same reason.
const NET_DEMO_OS_BUILD: &[&str] = &["-p", "flashgate-demo-os", "--features", "net"];
/// Every other program of the firmware workspace.
const OTHERS_BUILD: &[&str] = &[
    "--workspace",
    "--exclude",
    "flashgate-loader",
    "--exclude",
    "flashgate-crypto-bench",
];

const USAGE: &str = "usage: cargo xtask firmware [--check]

  firmware          build device-fw (release) and write .elf/.bin for every program to
                    target/firmware/, then print a size table
  firmware --check  also run `cargo clippy -- -D warnings` on device-fw";

/// A failure, with the fix in the message.
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["firmware"] => firmware(false),
        ["firmware", "--check"] => firmware(true),
        ["-h" | "--help" | "help"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(Error(format!("unknown arguments {args:?}\n{USAGE}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// How the firmware gets compiled on this machine.
enum Toolchain {
    /// rustup's cargo with the target's prebuilt `core`.
    Rustup { cargo: OsString },
    /// Debian's rustc 1.8x+ building `core` from `rust-src` (`-Zbuild-std` via config).
    Debian,
}

impl Toolchain {
    fn detect() -> Result<Self> {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
            })
            .unwrap_or(false);
        if installed {
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            return Ok(Toolchain::Rustup { cargo });
        }
        let debian = ["/usr/bin/rustc", "/usr/bin/cargo"]
            .iter()
            .all(|p| Path::new(p).exists())
            && Path::new("/usr/lib/rustlib/src/rust/library/core").exists();
        if debian {
            return Ok(Toolchain::Debian);
        }
        Err(Error(format!(
            "no Cortex-M toolchain: rustup has no `{TARGET}` target and Debian's rustc with \
             rust-src (/usr/bin/rustc, /usr/lib/rustlib/src/rust) is not installed.\n\
             Run `scripts/setup.sh` (as root or with sudo), then try again."
        )))
    }

    fn describe(&self) -> String {
        match self {
            Toolchain::Rustup { .. } => format!("rustup ({TARGET} installed)"),
            Toolchain::Debian => "Debian rustc (/usr/bin) with -Zbuild-std=core".into(),
        }
    }

    /// A cargo command in `device-fw/` for `subcommand` (`build`, `clippy`).
    fn cargo(&self, fw_dir: &Path, subcommand: &str) -> Command {
        let mut cmd = match self {
            Toolchain::Rustup { cargo } => {
                let mut cmd = Command::new(cargo);
                cmd.arg(subcommand);
                // Stable cargo ignores the config's `[unstable]` table; keep it that way.
                cmd.env_remove("RUSTC_BOOTSTRAP");
                cmd
            }
            Toolchain::Debian => {
                // `cargo clippy` would find rustup's `cargo-clippy` proxy in ~/.cargo/bin
                // first; call Debian's (package rust-web-clippy) directly instead.
                let mut cmd = if subcommand == "clippy" {
                    let mut c = Command::new("/usr/bin/cargo-clippy");
                    c.arg("clippy");
                    c
                } else {
                    let mut c = Command::new("/usr/bin/cargo");
                    c.arg(subcommand);
                    c
                };
                let path = env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![PathBuf::from("/usr/bin")];
                dirs.extend(env::split_paths(&path));
                cmd.env(
                    "PATH",
                    env::join_paths(dirs).expect("PATH entries are valid"),
                )
                .env("CARGO", "/usr/bin/cargo")
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env_remove("RUSTUP_TOOLCHAIN")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTC_WORKSPACE_WRAPPER");
                cmd
            }
        };
        cmd.current_dir(fw_dir)
            .env("CARGO_TARGET_DIR", fw_dir.join("target"))
            // Host-workspace settings must not leak into the firmware build.
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        cmd
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| Error(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error(format!("{:?} failed ({status})", cmd.get_program())))
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| {
        Error(format!(
            "cannot run {:?}: {e} (binutils for Arm: run `scripts/setup.sh`)",
            cmd.get_program()
        ))
    })?;
    if !out.status.success() {
        return Err(Error(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sizes from `arm-none-eabi-size` (Berkeley: text = header/vectors + .text + .rodata).
struct Sizes {
    text: u64,
    data: u64,
    bss: u64,
}

fn sizes(elf: &Path) -> Result<Sizes> {
    let out = output(Command::new("arm-none-eabi-size").arg(elf))?;
    let line = out
        .lines()
        .nth(1)
        .ok_or_else(|| Error(format!("unexpected arm-none-eabi-size output: {out}")))?;
    let mut fields = line.split_whitespace().map(str::parse::<u64>);
    let mut next = || -> Result<u64> {
        fields
            .next()
            .and_then(|f| f.ok())
            .ok_or_else(|| Error(format!("unexpected arm-none-eabi-size line: {line}")))
    };
    Ok(Sizes {
        text: next()?,
        data: next()?,
        bss: next()?,
    })
}

/// Value of a symbol in `elf` (from `arm-none-eabi-nm`).
fn symbol(elf: &Path, name: &str) -> Result<Option<u32>> {
    let out = output(Command::new("arm-none-eabi-nm").arg(elf))?;
    Ok(out.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (value, _kind, sym) = (f.next()?, f.next()?, f.next()?);
        (sym == name).then(|| u32::from_str_radix(value, 16).ok())?
    }))
}

/// What the size and header checks need from one board's memory map (`layout::<board>`).
#[derive(Clone, Copy)]
struct Map {
    loader_base: u32,
    loader_max: u32,
    loader_footprint: u32,
    mailbox_addr: u32,
    bootloader_max: u32,
}

/// The emulated board's map: every program is built for it.
const MPS2_AN386: Map = Map {
    loader_base: layout::mps2_an386::LOADER_BASE,
    loader_max: layout::mps2_an386::LOADER_MAX,
    loader_footprint: layout::mps2_an386::LOADER_FOOTPRINT,
    mailbox_addr: layout::mps2_an386::MAILBOX_ADDR,
    bootloader_max: layout::mps2_an386::BOOTLOADER_MAX,
};

/// The nRF52840 port: its loader and bootloader are built and checked, nothing runs them.
const NRF52840: Map = Map {
    loader_base: layout::nrf52840::LOADER_BASE,
    loader_max: layout::nrf52840::LOADER_MAX,
    loader_footprint: layout::nrf52840::LOADER_FOOTPRINT,
    mailbox_addr: layout::nrf52840::MAILBOX_ADDR,
    bootloader_max: layout::nrf52840::BOOTLOADER_MAX,
};

/// Checks the loader image against `map` and its own symbols, as the station reads it.
fn check_loader(map: Map, elf: &Path, bin: &[u8]) -> Result<()> {
    let header = LoaderImageHeader::parse(bin)
        .map_err(|e| Error(format!("loader.bin has no valid FGDL header: {e}")))?;
    let want_entry = symbol(elf, "Reset")?.map(|a| a | 1);
    let want_yield = symbol(elf, "host_yield")?.map(|a| a | 1);
    let image_end = map.loader_base as usize + bin.len();
    let problems: Vec<String> = [
        (Some(header.entry) != want_entry).then(|| format!("entry {:#x}", header.entry)),
        (Some(header.host_yield) != want_yield)
            .then(|| format!("host_yield {:#x}", header.host_yield)),
        (header.image_end as usize != image_end)
            .then(|| format!("image_end {:#x} != {image_end:#x}", header.image_end)),
        (bin.len() > map.loader_max as usize).then(|| format!("{} bytes > LOADER_MAX", bin.len())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error(format!(
            "loader header mismatch: {}",
            problems.join(", ")
        )))
    }
}

/// Copies a built ELF to `dir/name.elf`, writes `dir/name.bin` from it; returns the ELF's path,
/// the .bin's bytes and the section sizes.
fn package(built_elf: &Path, dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>, Sizes)> {
    let elf = dir.join(format!("{name}.elf"));
    let bin = dir.join(format!("{name}.bin"));
    fs::copy(built_elf, &elf)?;
    run(Command::new("arm-none-eabi-objcopy")
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin))?;
    let sizes = sizes(&elf)?;
    Ok((elf, fs::read(&bin)?, sizes))
}

/// An image of `len` bytes fits its `slot`-byte slot, or the error says which.
fn fits(name: &str, len: u64, slot: u32) -> Result<()> {
    if len > u64::from(slot) {
        return Err(Error(format!(
            "{name}.bin: {len} bytes do not fit its slot ({slot} bytes, protocol `layout`)"
        )));
    }
    Ok(())
}

/// Programs whose signed image pins trust anchors, and the image kind (slot) each is linked for.
const ANCHORED: &[(&str, ImageKind)] = &[
    ("bootloader", ImageKind::Bootloader),
    ("bootloader-net", ImageKind::Bootloader),
    ("demo-os", ImageKind::Os),
    ("demo-os-net", ImageKind::Os),
    ("c-demo-os", ImageKind::Os),
];

/// Checks that the trust-anchor block sits at `layout::TRUST_ANCHORS_OFFSET` into the image
/// (the linker's symbol and the bytes of the .bin), as the placeholder the signing tool fills.
fn check_trust_anchors(name: &str, kind: ImageKind, elf: &Path, bin: &[u8]) -> Result<()> {
    let want = kind.slot().body_addr + layout::TRUST_ANCHORS_OFFSET;
    let at = symbol(elf, "__trust_anchors")?;
    if at != Some(want) {
        return Err(Error(format!(
            "{name}: .trust_anchors at {at:x?}, not at {want:#x} (slot body + TRUST_ANCHORS_OFFSET)"
        )));
    }
    match trust_anchors::read(bin) {
        Ok(anchors) if !anchors.is_filled() => Ok(()),
        Ok(_) => Err(Error(format!(
            "{name}.bin: the trust anchors are filled at build time; they must be zero"
        ))),
        Err(e) => Err(Error(format!(
            "{name}.bin: no trust-anchor placeholder at offset {:#x}: {e}",
            layout::TRUST_ANCHORS_OFFSET
        ))),
    }
}

fn firmware(check: bool) -> Result<()> {
    let root = repo_root();
    let fw_dir = root.join("device-fw");
    let toolchain = Toolchain::detect()?;
    println!("xtask: firmware toolchain: {}", toolchain.describe());

    // Two builds, because cargo unifies features over the packages of one build: the loader
    // links the compact SHA-2 rounds (its size budget), and the crypto bench is built with it so
    // that its primitive figures are the loader's; every other program keeps the fast rounds.
    let built = fw_dir.join("target").join(TARGET).join("release");
    // The plain build below links `bootloader` and `demo-os` again (cargo keeps both feature
    // sets), so the network ones are copied aside first.
    for selection in [
        LOADER_BUILD,
        NET_BOOTLOADER_BUILD,
        NET_DEMO_OS_BUILD,
        OTHERS_BUILD,
    ] {
        run(toolchain
            .cargo(&fw_dir, "build")
            .arg("--release")
            .args(selection))?;
        if selection == NET_BOOTLOADER_BUILD {
            fs::copy(built.join("bootloader"), built.join("bootloader-net"))?;
        }
        if selection == NET_DEMO_OS_BUILD {
            fs::copy(built.join("demo-os"), built.join("demo-os-net"))?;
        }
    }
    if check {
        for selection in [
            LOADER_BUILD,
            NET_BOOTLOADER_BUILD,
            NET_DEMO_OS_BUILD,
            OTHERS_BUILD,
        ] {
            run(toolchain
                .cargo(&fw_dir, "clippy")
                .arg("--release")
                .args(selection)
                .args(["--", "-D", "warnings"]))?;
        }
    }

    let out_dir = root.join("target").join("firmware");
    fs::create_dir_all(&out_dir)?;

    println!();
    println!(
        "{:<14} {:<18} {:>8} {:>6} {:>6} {:>8}",
        "program", "", "text", "data", "bss", "bin"
    );
    // The C demo OS has its own Makefile (GNU make and arm-none-eabi-gcc only); it is packaged
    // and checked like the Rust programs.
    let c_build = out_dir.join("c-demo-os.build");
    output(
        Command::new("make")
            .args(["-s", "-C"])
            .arg(fw_dir.join("c-demo-os"))
            .arg(format!("OUT={}", c_build.display())),
    )?;
    let programs = PROGRAMS
        .iter()
        .map(|(name, what)| (*name, *what, built.join(name)))
        .chain([("c-demo-os", "C demo OS", c_build.join("c-demo-os.elf"))]);
    let mut loader_footprint = None;
    for (name, what, built_elf) in programs {
        let (elf, bin, s) = package(&built_elf, &out_dir, name)?;
        let bin_len = bin.len() as u64;
        println!(
            "{name:<14} {what:<18} {:>8} {:>6} {:>6} {:>8}",
            s.text, s.data, s.bss, bin_len
        );
        if let Some((_, kind)) = ANCHORED.iter().find(|(n, _)| *n == name) {
            check_trust_anchors(name, *kind, &elf, &bin)?;
            fits(name, bin_len, kind.slot().max_body)?;
        }
        if name == "loader" {
            check_loader(MPS2_AN386, &elf, &bin)?;
            let stack = u64::from(symbol(&elf, "__stack_reserve")?.unwrap_or(0));
            loader_footprint = Some((bin_len, s.data, s.bss, stack));
        }
    }
    if let Some((image, data, bss, stack)) = loader_footprint {
        let span =
            u64::from(MPS2_AN386.mailbox_addr - MPS2_AN386.loader_base) + mailbox::TOTAL_LEN as u64;
        println!(
            "\nloader image {image} B (goal <= {} B); RAM span image..mailbox end {span} B of \
             {} (data {data} + bss {bss}, stack reserve {stack}, mailbox {}); \
             stack high-water: `cargo bench -p flashgate-tests --bench foundation`",
            MPS2_AN386.loader_max,
            MPS2_AN386.loader_footprint,
            mailbox::TOTAL_LEN,
        );
    }
    silicon_ports(&toolchain, &fw_dir, &out_dir, check)?;
    println!("\nxtask: wrote .elf and .bin to {}", out_dir.display());
    Ok(())
}

/// The real-silicon port (nRF52840): its loader and bootloader, built for the chip's memory
/// map in their own target dir (the board feature changes what the protocol crate compiles),
/// linted with `--check`, packaged under `target/firmware/nrf52840/` and checked against the
/// map. Nothing here runs them: there is no nRF52840 on this machine.
fn silicon_ports(toolchain: &Toolchain, fw_dir: &Path, out_dir: &Path, check: bool) -> Result<()> {
    // One build per program, as above: the loader's compact SHA-2 must not reach the bootloader.
    let builds: [(&str, &[&str]); 2] = [
        (
            "loader",
            &[
                "-p",
                "flashgate-loader",
                "--no-default-features",
                "--features",
                "board-nrf52840",
            ],
        ),
        (
            "bootloader",
            &["-p", "flashgate-bootloader", "--features", "board-nrf52840"],
        ),
    ];
    let target_dir = fw_dir.join("target").join("nrf52840");
    let port_out = out_dir.join("nrf52840");
    fs::create_dir_all(&port_out)?;
    println!("\nnrf52840 port (built, size-checked, never run here):");
    println!(
        "{:<11} {:>8} {:>6} {:>6} {:>8} {:>8}",
        "program", "text", "data", "bss", "bin", "slot"
    );
    for (name, selection) in builds {
        let subcommands: &[&str] = if check {
            &["build", "clippy"]
        } else {
            &["build"]
        };
        for subcommand in subcommands {
            let mut cmd = toolchain.cargo(fw_dir, subcommand);
            cmd.env("CARGO_TARGET_DIR", &target_dir)
                .arg("--release")
                .args(selection);
            if *subcommand == "clippy" {
                cmd.args(["--", "-D", "warnings"]);
            }
            run(&mut cmd)?;
        }
        let built_elf = target_dir.join(TARGET).join("release").join(name);
        let (elf, bytes, s) = package(&built_elf, &port_out, name)?;
        let slot = if name == "loader" {
            NRF52840.loader_max
        } else {
            NRF52840.bootloader_max
        };
        println!(
            "{name:<11} {:>8} {:>6} {:>6} {:>8} {:>8}",
            s.text,
            s.data,
            s.bss,
            bytes.len(),
            slot
        );
        // The loader's slot is checked with its header (`check_loader`).
        if name == "loader" {
            check_loader(NRF52840, &elf, &bytes)?;
        } else {
            check_trust_anchors("nrf52840 bootloader", ImageKind::Bootloader, &elf, &bytes)?;
            fits("nrf52840 bootloader", bytes.len() as u64, slot)?;
        }
    }
    Ok(())
}
