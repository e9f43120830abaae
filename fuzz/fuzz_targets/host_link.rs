#![no_main]
//! The station's end of a device UART (hello, status receipt, update transfer, data relay)
//! reading whatever a hostile or broken device sends back.
use std::io::{self, Read, Write};
use std::time::Duration;

use flashgate_fuzz::pieces;
use flashgate_protocol::uart::host::{HostLink, Transport};

/// A device that answers every read with the next piece of the input, then hangs up.
struct Device<'a> {
    pieces: Box<dyn Iterator<Item = &'a [u8]> + 'a>,
}

impl Read for Device<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(piece) = self.pieces.next() else {
            return Ok(0);
        };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        Ok(n)
    }
}

impl Write for Device<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Device<'_> {}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut link = HostLink::new(Device {
        pieces: Box::new(pieces(rest)),
    });
    let t = Duration::from_secs(5);
    match which % 6 {
        0 => drop(link.hello([7; 32], t)),
        1 => drop(link.status_receipt([7; 32], t)),
        2 => drop(link.begin_update(&[0; 212], t)),
        3 => drop(link.finish_update(t)),
        4 => drop(link.wait_for_banner(t)),
        _ => drop(link.next_data_record(t)),
    }
});
