//! GDB remote serial protocol framing: `$payload#cs`, `}` escapes, `*` run-length, acks.
//! Pure functions and a byte-fed decoder, so they can be tested without a socket.

use std::collections::VecDeque;

/// Bytes that must be escaped inside a packet (`}` then byte ^ 0x20).
const ESCAPED: [u8; 4] = [b'#', b'$', b'}', b'*'];

/// Bytes the framing adds around a payload: `$`, `#` and two checksum digits.
pub const FRAMING_LEN: usize = 4;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The modulo-256 sum GDB uses as checksum.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// True if `byte` must be escaped in binary data.
pub fn needs_escape(byte: u8) -> bool {
    ESCAPED.contains(&byte)
}

/// Appends `data` escaped for a binary (`X`) packet.
pub fn escape_into(data: &[u8], out: &mut Vec<u8>) {
    for &b in data {
        if needs_escape(b) {
            out.push(b'}');
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
}

/// Appends `$payload#cs`; `payload` must already be escaped.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    let sum = checksum(payload);
    out.reserve(payload.len() + FRAMING_LEN);
    out.push(b'$');
    out.extend_from_slice(payload);
    out.push(b'#');
    out.push(HEX_DIGITS[usize::from(sum >> 4)]);
    out.push(HEX_DIGITS[usize::from(sum & 0xF)]);
}

/// Frames a packet into a new buffer.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(payload, &mut out);
    out
}

/// Appends lowercase hex of `data`.
pub fn hex_into(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() * 2);
    for &b in data {
        out.push(HEX_DIGITS[usize::from(b >> 4)]);
        out.push(HEX_DIGITS[usize::from(b & 0xF)]);
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex into `out`; `None` on an odd length or a non-hex digit.
pub fn unhex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (pair, byte) in hex.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(())
}

/// Decodes hex into a new vector.
pub fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0; hex.len() / 2];
    unhex_into(hex, &mut out)?;
    Some(out)
}

/// Parses a hex number (as in `PacketSize=1000` or `E22`).
pub fn parse_hex_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter()
        .try_fold(0u64, |acc, &d| Some((acc << 4) | u64::from(hex_value(d)?)))
}

/// If `reply` is an error reply `Exx`, its number.
pub fn error_code(reply: &[u8]) -> Option<u8> {
    match reply {
        [b'E', a, b] => Some((hex_value(*a)? << 4) | hex_value(*b)?),
        _ => None,
    }
}

/// What arrives from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `+`: the last packet arrived intact.
    Ack,
    /// `-`: the last packet arrived damaged; send it again.
    Nack,
    /// A packet whose checksum matched, unescaped and run-length expanded.
    Packet(Vec<u8>),
    /// A packet whose checksum did not match (answer with `-`).
    BadChecksum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Payload,
    Checksum1,
    Checksum2(u8),
}

/// Turns received bytes into [`Event`]s; keeps partial packets between calls.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    raw: Vec<u8>,
    events: VecDeque<Event>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Decoder {
            state: State::Idle,
            raw: Vec::with_capacity(8192),
            events: VecDeque::new(),
        }
    }

    /// Feeds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((&b, tail)) = rest.split_first() {
            match self.state {
                State::Idle => match b {
                    b'+' => self.events.push_back(Event::Ack),
                    b'-' => self.events.push_back(Event::Nack),
                    b'$' => {
                        self.raw.clear();
                        self.state = State::Payload;
                    }
                    // Noise between packets (and `%` notifications we never ask for) is skipped.
                    _ => {}
                },
                State::Payload => {
                    // Fast path: copy up to the end marker in one go.
                    let end = rest.iter().position(|&c| c == b'#').unwrap_or(rest.len());
                    self.raw.extend_from_slice(&rest[..end]);
                    if end < rest.len() {
                        self.state = State::Checksum1;
                        rest = &rest[end + 1..];
                    } else {
                        rest = &[];
                    }
                    continue;
                }
                State::Checksum1 => self.state = State::Checksum2(b),
                State::Checksum2(first) => {
                    self.state = State::Idle;
                    let expected = hex_value(first)
                        .zip(hex_value(b))
                        .map(|(h, l)| (h << 4) | l);
                    if expected == Some(checksum(&self.raw)) {
                        let payload = expand(&self.raw);
                        self.events.push_back(Event::Packet(payload));
                    } else {
                        self.events.push_back(Event::BadChecksum);
                    }
                }
            }
            rest = tail;
        }
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Puts an event back in front (seen while waiting for something else).
    pub fn unread(&mut self, event: Event) {
        self.events.push_front(event);
    }
}

/// Undoes `}` escapes and `*` run-length encoding of a received payload.
pub fn expand(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'}' if i + 1 < raw.len() => {
                out.push(raw[i + 1] ^ 0x20);
                i += 2;
            }
            b'*' if i + 1 < raw.len() && !out.is_empty() => {
                let repeat = usize::from(raw[i + 1].saturating_sub(29));
                let last = *out.last().expect("checked non-empty");
                out.extend(std::iter::repeat_n(last, repeat));
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_with_checksum() {
        assert_eq!(frame(b"g"), b"$g#67");
        assert_eq!(frame(b"qSupported"), b"$qSupported#37");
        assert_eq!(frame(b""), b"$#00");
    }

    #[test]
    fn escapes_the_four_special_bytes() {
        let mut out = Vec::new();
        escape_into(b"a#$}*z", &mut out);
        assert_eq!(out, b"a}\x03}\x04}\x5d}\x0az");
        assert_eq!(expand(&out), b"a#$}*z");
    }

    #[test]
    fn escaped_bytes_roundtrip_for_every_value() {
        let data: Vec<u8> = (0..=255).collect();
        let mut escaped = Vec::new();
        escape_into(&data, &mut escaped);
        assert_eq!(escaped.len(), 256 + 4);
        assert!(!escaped.iter().any(|&b| b == b'#' || b == b'$'));
        assert_eq!(expand(&escaped), data);
    }

    #[test]
    fn decodes_acks_packets_and_split_input() {
        let mut d = Decoder::new();
        d.feed(b"+$OK#9a-$T05th");
        assert_eq!(d.next_event(), Some(Event::Ack));
        assert_eq!(d.next_event(), Some(Event::Packet(b"OK".to_vec())));
        assert_eq!(d.next_event(), Some(Event::Nack));
        assert_eq!(d.next_event(), None);
        d.feed(b"read:p01.01;#0");
        assert_eq!(d.next_event(), None);
        d.feed(b"6");
        assert_eq!(
            d.next_event(),
            Some(Event::Packet(b"T05thread:p01.01;".to_vec()))
        );
    }

    #[test]
    fn decodes_byte_by_byte() {
        let mut d = Decoder::new();
        for &b in b"$m}]x#"
            .iter()
            .chain(format!("{:02x}", checksum(b"m}]x")).as_bytes())
        {
            d.feed(&[b]);
        }
        assert_eq!(d.next_event(), Some(Event::Packet(b"m}x".to_vec())));
    }

    #[test]
    fn reports_bad_checksum() {
        let mut d = Decoder::new();
        d.feed(b"$OK#00");
        assert_eq!(d.next_event(), Some(Event::BadChecksum));
        d.feed(b"$OK#zz");
        assert_eq!(d.next_event(), Some(Event::BadChecksum));
    }

    #[test]
    fn expands_run_length() {
        // "0* " = '0' then 32-29 = 3 more.
        assert_eq!(expand(b"0* "), b"0000");
        let mut d = Decoder::new();
        d.feed(&frame(b"a*\"b"));
        assert_eq!(d.next_event(), Some(Event::Packet(b"aaaaaab".to_vec())));
    }

    #[test]
    fn hex_helpers() {
        let mut out = Vec::new();
        hex_into(&[0x00, 0xAB, 0xFF], &mut out);
        assert_eq!(out, b"00abff");
        assert_eq!(unhex(b"00ABff"), Some(vec![0, 0xAB, 0xFF]));
        assert_eq!(unhex(b"0g"), None);
        assert_eq!(unhex(b"abc"), None);
        assert_eq!(parse_hex_u64(b"1000"), Some(4096));
        assert_eq!(parse_hex_u64(b""), None);
        assert_eq!(error_code(b"E22"), Some(0x22));
        assert_eq!(error_code(b"e2"), None);
        assert_eq!(error_code(b"OK"), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// Whatever the station sends (escaped and framed) a server's decoder gets back
            /// byte for byte, however the stream is split.
            #[test]
            fn framed_payloads_decode_to_themselves(
                data in proptest::collection::vec(any::<u8>(), 0..600),
                split in any::<usize>(),
            ) {
                let mut escaped = Vec::new();
                escape_into(&data, &mut escaped);
                let wire = frame(&escaped);
                let at = split % (wire.len() + 1);
                let mut d = Decoder::new();
                d.feed(&wire[..at]);
                d.feed(&wire[at..]);
                prop_assert_eq!(d.next_event(), Some(Event::Packet(data)));
                prop_assert_eq!(d.next_event(), None);
            }

            #[test]
            fn hex_round_trips(data in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut hex = Vec::new();
                hex_into(&data, &mut hex);
                prop_assert_eq!(unhex(&hex), Some(data));
            }

            /// Any bytes from a server: events, never a panic; run-length expansion stays
            /// bounded by its encoding (each `*n` repeats at most 97 bytes).
            #[test]
            fn any_reply_bytes_are_decoded_safely(
                wire in proptest::collection::vec(any::<u8>(), 0..2000),
            ) {
                let mut d = Decoder::new();
                d.feed(&wire);
                while let Some(event) = d.next_event() {
                    if let Event::Packet(p) = event {
                        prop_assert!(p.len() <= wire.len() * 113);
                    }
                }
                prop_assert!(expand(&wire).len() <= wire.len() * 113);
            }
        }
    }
}
