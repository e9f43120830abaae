//! A bare QEMU `mps2-an386` with only a gdbstub (nothing loaded, halted), for probe tests and
//! the link bench. Killed on drop.

#![allow(dead_code)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

pub struct BareQemu {
    child: Child,
    pub gdb: SocketAddr,
}

impl BareQemu {
    /// Starts QEMU on a free port (retrying when a parallel test grabbed it first) and returns
    /// once the gdb port accepts connections.
    pub fn start() -> Self {
        for _ in 0..8 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let gdb = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let mut child = Command::new("qemu-system-arm")
                .args([
                    "-M",
                    "mps2-an386",
                    "-S",
                    "-nographic",
                    "-monitor",
                    "none",
                    "-serial",
                    "none",
                ])
                .arg("-gdb")
                .arg(format!("tcp:{gdb}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("qemu-system-arm must be installed");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                // Not a connect (QEMU's gdbstub serves one client): once QEMU listens, the
                // port cannot be bound any more.
                if TcpListener::bind(gdb).is_err() {
                    return BareQemu { child, gdb };
                }
                assert!(Instant::now() < deadline, "QEMU did not open its gdb port");
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start QEMU on a free port");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BareQemu {
    fn drop(&mut self) {
        self.kill();
    }
}
