//! An in-memory GDB server for unit tests: decodes what the client sends and answers through a
//! handler closure.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    packet::{frame_into, Decoder, Event},
    Transport,
};

type Handler = Box<dyn FnMut(&[u8]) -> Vec<Vec<u8>> + Send>;

/// What the mock saw; shared with the test.
#[derive(Default)]
pub(crate) struct Seen {
    /// Payloads of the packets received, in order.
    pub packets: Vec<Vec<u8>>,
    /// Count of `\x03` interrupts.
    pub interrupts: usize,
    /// Acks received from the client.
    pub acks: usize,
}

pub(crate) struct MockServer {
    decoder: Decoder,
    handler: Handler,
    to_client: VecDeque<u8>,
    seen: Arc<Mutex<Seen>>,
    /// After this many packets the server "dies": reads return EOF.
    pub close_after: Option<usize>,
    /// Corrupt the checksum of the next answer once.
    pub corrupt_next: bool,
}

impl MockServer {
    pub(crate) fn new(
        handler: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (Self, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (
            MockServer {
                decoder: Decoder::new(),
                handler: Box::new(handler),
                to_client: VecDeque::new(),
                seen: seen.clone(),
                close_after: None,
                corrupt_next: false,
            },
            seen,
        )
    }

    fn closed(&self) -> bool {
        matches!(self.close_after, Some(n) if self.seen.lock().unwrap().packets.len() >= n)
    }
}

impl Read for MockServer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_client.is_empty() {
            if self.closed() {
                return Ok(0);
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.to_client.len());
        for (dst, src) in buf.iter_mut().zip(self.to_client.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for MockServer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if bytes == [0x03] {
            self.seen.lock().unwrap().interrupts += 1;
            let replies = (self.handler)(b"\x03");
            self.queue(replies, false);
            return Ok(1);
        }
        self.decoder.feed(bytes);
        while let Some(event) = self.decoder.next_event() {
            match event {
                Event::Packet(payload) => {
                    self.seen.lock().unwrap().packets.push(payload.clone());
                    if self.closed() {
                        return Ok(bytes.len());
                    }
                    let replies = (self.handler)(&payload);
                    self.queue(replies, true);
                }
                Event::Ack => self.seen.lock().unwrap().acks += 1,
                Event::Nack | Event::BadChecksum => {}
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MockServer {
    fn queue(&mut self, replies: Vec<Vec<u8>>, ack: bool) {
        if ack {
            self.to_client.push_back(b'+');
        }
        for reply in replies {
            let mut framed = Vec::new();
            frame_into(&reply, &mut framed);
            if self.corrupt_next {
                self.corrupt_next = false;
                let bad = framed.clone();
                let len = bad.len();
                let mut bad = bad;
                bad[len - 1] = if bad[len - 1] == b'0' { b'1' } else { b'0' };
                self.to_client.extend(bad);
            }
            self.to_client.extend(framed);
        }
    }
}

impl Transport for MockServer {
    fn set_read_timeout(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}
