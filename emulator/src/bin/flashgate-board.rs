//! `flashgate-board`: create, start and inspect emulated flashgate boards.

use std::{path::PathBuf, process::ExitCode, sync::mpsc};

use clap::{Parser, Subcommand};
use flashgate_emulator::{BoardFiles, EmulatedBoard, StartOptions, Uid};

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
    /// Power the board on (halted), print its addresses, and power it off cleanly on Ctrl-C.
    Start {
        /// The board directory.
        dir: PathBuf,
        /// Deterministic instruction counting (-icount shift=0).
        #[arg(long)]
        icount: bool,
        /// Let the CPU run at once instead of waiting for a debugger.
        #[arg(long)]
        run: bool,
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
        Cmd::Start { dir, icount, run } => {
            let (tx, rx) = mpsc::channel();
            ctrlc::set_handler(move || {
                let _ = tx.send(());
            })?;
            let options = StartOptions {
                icount,
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
            if run {
                board.resume()?;
            }
            println!("running; Ctrl-C powers the board off (flash saved)");
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
