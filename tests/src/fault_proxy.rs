//! A fault-injecting TCP proxy on loopback: one per link of a test cluster (an etcd member's
//! client port, its peer port). It passes bytes through, or delays them, drops the link
//! (open connections cut, new ones refused) or black-holes it (bytes accepted and swallowed,
//! nothing answered — a cable cut that TCP does not notice). A fault can apply to every
//! connection or only to those whose first HTTP request names a given sender in
//! `X-Server-From` (etcd's peer protocol does): that isolates one member from another.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a link does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Bytes go through.
    Pass,
    /// Each chunk waits this long before it is forwarded.
    Delay(Duration),
    /// Open connections are cut, new ones closed at once.
    Drop,
    /// Bytes are read and thrown away; nothing comes back.
    Blackhole,
}

struct Conn {
    sender: Option<String>,
    streams: [TcpStream; 2],
}

#[derive(Default)]
struct State {
    all: Option<Fault>,
    by_sender: HashMap<String, Fault>,
    conns: Vec<Conn>,
}

impl State {
    fn fault_for(&self, sender: Option<&str>) -> Fault {
        sender
            .and_then(|s| self.by_sender.get(s).copied())
            .or(self.all)
            .unwrap_or(Fault::Pass)
    }

    /// Cuts the connections `scope` selects (all when `None`).
    fn cut(&mut self, scope: Option<&str>) {
        self.conns.retain(|conn| {
            let hit = scope.is_none_or(|s| conn.sender.as_deref() == Some(s));
            if hit {
                for stream in &conn.streams {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
            !hit
        });
    }
}

/// A loopback TCP proxy in front of `target`.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// How long the proxy waits for the first request's headers when it sniffs the sender.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(2);

impl FaultProxy {
    /// Forwards to `target`. With `sniff_sender`, each connection's sender is read from the
    /// `X-Server-From` header of its first HTTP request.
    pub fn start(target: SocketAddr, sniff_sender: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || accept(client, target, sniff_sender, &shared));
            }
        });
        Self { addr, state }
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault of every connection (a per-sender fault still wins).
    pub fn set(&self, fault: Fault) {
        let mut state = self.state.lock().unwrap();
        let before = state.all.unwrap_or(Fault::Pass);
        state.all = Some(fault);
        if must_cut(before, fault) {
            state.cut(None);
        }
    }

    /// Sets the fault of connections from `sender` (`X-Server-From`); `Pass` clears it.
    pub fn set_for(&self, sender: &str, fault: Fault) {
        let mut state = self.state.lock().unwrap();
        let before = state.fault_for(Some(sender));
        if fault == Fault::Pass {
            state.by_sender.remove(sender);
        } else {
            state.by_sender.insert(sender.to_owned(), fault);
        }
        if must_cut(before, fault) {
            state.cut(Some(sender));
        }
    }

    /// Back to passing everything; black-holed connections are cut (their bytes are gone).
    pub fn heal(&self) {
        let mut state = self.state.lock().unwrap();
        let cut = state.all == Some(Fault::Blackhole)
            || state.by_sender.values().any(|f| *f == Fault::Blackhole);
        state.all = None;
        state.by_sender.clear();
        if cut {
            state.cut(None);
        }
    }
}

/// Entering a drop cuts open connections; leaving a black hole cuts the ones that lost bytes.
fn must_cut(before: Fault, after: Fault) -> bool {
    after == Fault::Drop || (before == Fault::Blackhole && after != Fault::Blackhole)
}

fn accept(client: TcpStream, target: SocketAddr, sniff: bool, state: &Arc<Mutex<State>>) {
    let _ = client.set_nodelay(true);
    let (sender, head) = if sniff {
        sniff_sender(&client)
    } else {
        (None, Vec::new())
    };
    if state.lock().unwrap().fault_for(sender.as_deref()) == Fault::Drop {
        return;
    }
    let Ok(mut server) = TcpStream::connect(target) else {
        return;
    };
    let _ = server.set_nodelay(true);
    if server.write_all(&head).is_err() {
        return;
    }
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    state.lock().unwrap().conns.push(Conn {
        sender: sender.clone(),
        streams: [c3, s3],
    });
    let (st, sn) = (state.clone(), sender.clone());
    std::thread::spawn(move || pipe(c2, server, sn.as_deref(), &st));
    pipe(s2, client, sender.as_deref(), state);
}

/// Reads the first request's headers (up to 16 KiB) and the `X-Server-From` in them.
fn sniff_sender(client: &TcpStream) -> (Option<String>, Vec<u8>) {
    let _ = client.set_read_timeout(Some(SNIFF_TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let mut reader = client;
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client.set_read_timeout(None);
    let sender = String::from_utf8_lossy(&head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-server-from")
            .then(|| value.trim().to_owned())
    });
    (sender, head)
}

fn pipe(mut from: TcpStream, mut to: TcpStream, sender: Option<&str>, state: &Mutex<State>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let fault = state.lock().unwrap().fault_for(sender);
        match fault {
            Fault::Pass => {}
            Fault::Delay(d) => std::thread::sleep(d),
            Fault::Blackhole => continue,
            Fault::Drop => break,
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
