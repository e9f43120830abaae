//! A TCP proxy between an emulated board's guest forward and the device gateway, on loopback.
//!
//! It counts what crosses it (bytes each way, chunk frames towards the device) and can play
//! the network in the threat model: each frame the gateway sends towards the device goes
//! through a [`Rewrite`] first, which may replace the request (re-encoded with a good
//! checksum: the frame CRC catches line noise, not an attacker).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use flashgate_protocol::codec::Codec;
use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::{FrameDecoder, MsgType, Request};

/// What the proxy does to one request on its way to the device: `None` passes it as is,
/// `Some(frame)` sends `frame` (a whole encoded frame) instead.
pub type Rewrite = Box<dyn FnMut(&Request<'_>) -> Option<Vec<u8>> + Send>;

/// Counters of everything the proxy carried (all connections).
#[derive(Debug, Default)]
pub struct Carried {
    /// Bytes from the gateway to the device.
    pub to_device: AtomicU64,
    /// Bytes from the device to the gateway.
    pub to_gateway: AtomicU64,
    /// `UpdateChunk` frames towards the device.
    pub chunks: AtomicU64,
    /// When the first `UpdateBegin` and the last `UpdateFinish` went towards the device.
    pub transfer: Mutex<(Option<Instant>, Option<Instant>)>,
}

impl Carried {
    /// (to the device, to the gateway, chunk frames) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.to_device.load(Ordering::SeqCst),
            self.to_gateway.load(Ordering::SeqCst),
            self.chunks.load(Ordering::SeqCst),
        )
    }
}

/// The proxy: listens on a loopback port, one gateway connection per board connection.
pub struct GatewayProxy {
    /// Where the board's guest forward should point.
    pub addr: SocketAddr,
    /// What it carried.
    pub carried: Arc<Carried>,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
}

impl GatewayProxy {
    /// Proxies to the gateway at `gateway`, passing everything through.
    pub fn start(gateway: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let carried = Arc::new(Carried::default());
        let rewrite: Arc<Mutex<Option<Rewrite>>> = Arc::new(Mutex::new(None));
        let (c, r) = (carried.clone(), rewrite.clone());
        thread::spawn(move || {
            for board in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(gateway) else {
                    let _ = board.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (board.set_nodelay(true), upstream.set_nodelay(true));
                spawn_pumps(board, upstream, c.clone(), r.clone());
            }
        });
        Ok(Self {
            addr,
            carried,
            rewrite,
        })
    }

    /// From now on, requests towards the device go through `rewrite`.
    pub fn set_rewrite(&self, rewrite: Rewrite) {
        *self.rewrite.lock().unwrap_or_else(|p| p.into_inner()) = Some(rewrite);
    }
}

fn spawn_pumps(
    board: TcpStream,
    upstream: TcpStream,
    carried: Arc<Carried>,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
) {
    let (Ok(board2), Ok(upstream2)) = (board.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = carried.clone();
    // Device → gateway: untouched.
    thread::spawn(move || {
        pump(board2, upstream2, |bytes| {
            up.to_gateway
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
            bytes.to_vec()
        })
    });
    // Gateway → device: frame by frame, through the rewrite.
    thread::spawn(move || {
        let mut decoder = Box::new(FrameDecoder::new());
        pump(upstream, board, move |bytes| {
            let mut out = Vec::with_capacity(bytes.len());
            for byte in bytes {
                let Some(Ok(frame)) = decoder.push(*byte) else {
                    continue;
                };
                let original = frame_bytes(frame.body());
                let Ok(request) = Request::read_bytes(frame.body()) else {
                    out.extend_from_slice(&original);
                    continue;
                };
                match frame.msg_type() {
                    Ok(MsgType::UpdateChunk) => {
                        carried.chunks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(MsgType::UpdateBegin) => {
                        let mut t = carried.transfer.lock().unwrap_or_else(|p| p.into_inner());
                        t.0.get_or_insert_with(Instant::now);
                    }
                    Ok(MsgType::UpdateFinish) => {
                        let mut t = carried.transfer.lock().unwrap_or_else(|p| p.into_inner());
                        t.1 = Some(Instant::now());
                    }
                    _ => {}
                }
                let replaced = rewrite
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .and_then(|r| r(&request));
                out.extend_from_slice(&replaced.unwrap_or(original));
            }
            carried
                .to_device
                .fetch_add(out.len() as u64, Ordering::SeqCst);
            out
        })
    });
}

/// The frame of `body` again (sync, body, CRC), through the request's own encoder.
fn frame_bytes(body: &[u8]) -> Vec<u8> {
    Request::read_bytes(body)
        .ok()
        .and_then(|r| frame_to_vec(&r).ok())
        .unwrap_or_default()
}

/// Copies `from` to `to` through `map` until either end closes; then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, mut map: impl FnMut(&[u8]) -> Vec<u8>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let out = map(&buf[..n]);
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
