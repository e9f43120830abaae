//! `flashgate-board`: create, start and inspect emulated flashgate boards.

use std::{path::PathBuf, process::ExitCode, sync::mpsc};

use clap::{Parser, Subcommand};
use flashgate_emulator::{
    BoardFiles, EmulatedBoard, NetworkOptions, StartOptions, TcpForward, Uid,
};

#[derive(Parser)]
#[command(version, about = "Emulated flashgate boards (QEMU mps2-an386)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a board directory: erased 4 MiB flash and a unique ID.
    Create {
        /// The board directory.
        dir: PathBuf,
        /// The unique ID, 32 hex digits (random when absent).
        #[arg(long)]
        uid: Option<String>,
    },
    /// Power the board on (halted), print its addresses, and power it off cleanly on Ctrl-C or SIGTERM.
    Start {
        /// The board directory.
        dir: PathBuf,
        /// Deterministic instruction counting (-icount shift=0).
        #[arg(long)]
        icount: bool,
        /// Let the CPU run at once instead of waiting for a debugger.
        #[arg(long)]
        run: bool,
        /// Give the board Ethernet with a guest TCP forward, GUEST=HOST (e.g.
        /// `10.0.2.100:9000=127.0.0.1:4000`; HOST must be loopback and already listening).
        /// Repeatable. Without it the board's Ethernet reaches nothing.
        #[arg(long = "forward-tcp", value_name = "GUEST=HOST", value_parser = parse_forward)]
        forward_tcp: Vec<TcpForward>,
    },
    /// Show a board's UID and debug-lock state.
    Info {
        /// The board directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashgate-board: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Cmd::Create { dir, uid } => {
            let uid = uid.as_deref().map(Uid::from_hex).transpose()?;
            let uid = EmulatedBoard::create(&dir, uid)?;
            println!("board {} uid {uid}", dir.display());
        }
        Cmd::Start {
            dir,
            icount,
            run,
            forward_tcp,
        } => {
            let (tx, rx) = mpsc::channel();
            ctrlc::set_handler(move || {
                let _ = tx.send(());
            })?;
            let network = (!forward_tcp.is_empty()).then_some(NetworkOptions {
                tcp_forwards: forward_tcp,
                frame_peer: None,
            });
            let options = StartOptions {
                icount,
                network,
                ..StartOptions::default()
            };
            let mut board = EmulatedBoard::start(&dir, options)?;
            println!("uid     {}", board.uid()?);
            match board.gdb_addr() {
                Some(addr) => println!("gdb     {addr}"),
                None => println!("gdb     none (debug port locked)"),
            }
            if let Some(addr) = board.serial_addr() {
                println!("serial  {addr}");
            }
            if let Some(addr) = board.qmp_addr() {
                println!("qmp     {addr}");
            }
            match &board.options().network {
                Some(net) => {
                    for fwd in &net.tcp_forwards {
                        println!("net     guest {} -> {} (tcp)", fwd.guest, fwd.host);
                    }
                }
                None => println!("net     isolated (no forward)"),
            }
            if run {
                board.resume()?;
            }
            println!("running; Ctrl-C or SIGTERM powers the board off (flash saved)");
            rx.recv()?;
            board.power_off()?;
            println!(
                "powered off; flash saved to {}",
                board.files().flash_path().display()
            );
        }
        Cmd::Info { dir } => {
            let files = BoardFiles::new(&dir);
            println!("uid          {}", files.uid()?);
            println!("debug locked {}", files.is_debug_locked()?);
        }
    }
    Ok(())
}

fn parse_forward(text: &str) -> Result<TcpForward, String> {
    let (guest, host) = text.split_once('=').ok_or_else(|| {
        format!("{text:?}: expected GUEST=HOST, e.g. 10.0.2.100:9000=127.0.0.1:4000")
    })?;
    let addr = |a: &str| {
        a.parse()
            .map_err(|e| format!("{a:?}: {e} (expected IPv4:PORT)"))
    };
    Ok(TcpForward {
        guest: addr(guest)?,
        host: addr(host)?,
    })
}
