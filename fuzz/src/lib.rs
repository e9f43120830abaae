//! What every flashgate fuzz target shares. A target is one file in `fuzz_targets/` that names a
//! parser and picks one of three kinds of harness:
//!
//! - [`codec_target!`]: a wire type with a `Codec` impl — any bytes are decoded, and what
//!   decodes must encode back to a value that decodes the same ([`codec_check`]);
//! - a byte-stream decoder (UART frames, GDB packets): the input is fed in pieces as it would
//!   arrive ([`pieces`]);
//! - a stateful session (the device's UART services, the update transfer, the loader): the input
//!   is a sequence of messages ([`messages`]), some sent raw and some framed or sealed properly
//!   by the harness, so the fuzzer gets past checksums and AEAD tags it cannot forge and reaches
//!   the state machine behind them.
//!
//! Fixtures ([`device`]) reuse the keys of `protocol/vectors/`, so the committed seeds (real
//! encoded messages from those vectors) are accepted by the targets as they are.

pub mod device;
pub mod uart;

pub use flashgate_protocol::codec::Codec;
use flashgate_protocol::ErrorCode;

/// The `Codec` oracle: `decode` reads bytes as one type and returns the value (as its `Debug`
/// text) and its re-encoding. A value that decodes must encode, and its encoding must decode to
/// the same value (a parser that accepts what its encoder cannot produce is a second,
/// unreviewed format). Use it through [`check_codec!`], which writes `decode` for a type.
pub fn codec_check(data: &[u8], decode: impl Fn(&[u8]) -> Result<(String, Vec<u8>), ErrorCode>) {
    let Ok((value, encoding)) = decode(data) else {
        return;
    };
    let (again, _) = decode(&encoding).expect("an encoding decodes");
    assert_eq!(again, value, "decode(encode(x)) != x");
}

/// Runs [`codec_check`] on `data` for the `Codec` type `ty` (lifetimes as `'_`).
#[macro_export]
macro_rules! check_codec {
    ($ty:ty, $data:expr) => {
        $crate::codec_check($data, |bytes| {
            let value = <$ty as $crate::Codec<'_>>::read_bytes(bytes)?;
            let encoding = $crate::Codec::get_encoding(&value)?;
            Ok((format!("{value:?}"), encoding))
        })
    };
}

/// A fuzz target for one `Codec` type: `codec_target!(BootState);` (lifetimes as `'_`).
#[macro_export]
macro_rules! codec_target {
    ($ty:ty) => {
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            $crate::check_codec!($ty, data);
        });
    };
}

/// Splits `data` into pieces of 1 to 64 bytes, each length taken from the byte before it, the
/// way a byte stream arrives in reads of varying size.
pub fn pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    core::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let n = (usize::from(len) % 64 + 1).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        rest = tail;
        Some(piece)
    })
}

/// One message of a session input.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// What the harness should do with it (each target gives the values meaning).
    pub mode: u8,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// Splits `data` into messages: `mode u8 | len u16le | bytes[len]` (a short last one takes what
/// is left).
pub fn messages(data: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = data;
    core::iter::from_fn(move || {
        let [mode, lo, hi, tail @ ..] = rest else {
            return None;
        };
        let n = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, tail) = tail.split_at(n);
        rest = tail;
        Some(Message { mode: *mode, bytes })
    })
}

/// Encodes messages in the format [`messages`] reads (for seeds and regression tests).
pub fn encode_messages<'m>(messages: impl IntoIterator<Item = (u8, &'m [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (mode, bytes) in messages {
        let len = u16::try_from(bytes.len()).expect("a message fits a u16 length");
        out.push(mode);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// A scratch directory in memory where the machine has one (`/dev/shm`), so targets that read
/// files (journals, store logs) are not bound by the disk.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    dir.expect("a scratch directory can be made")
}
