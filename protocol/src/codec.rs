//! The one way every wire type is encoded and decoded: [`Codec`], over a bounds-checked
//! [`Reader`] and [`Writer`].
//!
//! The shape is rustls's `msgs/codec.rs`: `encode` appends a value to an output, `read` takes
//! one value from a reader and leaves what follows. Unlike rustls the crate has no allocator on
//! the firmware, so a [`Writer`] fills a caller's `&mut [u8]` (and, with `std`, can also grow a
//! `Vec`). Every structure here has a fixed layout or a fixed header and a body, so failures are
//! few and typed: a short read or a full buffer is [`ErrorCode::BadLength`], anything else is
//! the type's own code (a wrong magic, an unknown kind, a bad check).
//!
//! Property tests and fuzz targets go through this trait, so a wire type's `Codec` impl is the
//! code production runs; the few inherent helpers left (`SignedImageHeader::parse`,
//! `RecordHeader::decode`, …) only wrap [`Codec::read`] for the callers that read a value from
//! the front of a longer buffer.

use crate::ErrorCode;

/// A wire type: encodes into a [`Writer`], reads from a [`Reader`].
///
/// `'a` is the lifetime of the bytes read: messages that carry a body borrow it instead of
/// copying (the firmware has no heap).
pub trait Codec<'a>: Sized {
    /// Appends the encoding of `self`.
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode>;

    /// Reads one value from the front of `r`, leaving the bytes after it.
    fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode>;

    /// Reads a value that must fill `bytes` exactly: trailing bytes are [`ErrorCode::BadLength`].
    fn read_bytes(bytes: &'a [u8]) -> Result<Self, ErrorCode> {
        let mut r = Reader::new(bytes);
        let value = Self::read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    /// Encodes into `out`, returning the number of bytes written.
    fn encode_into(&self, out: &mut [u8]) -> Result<usize, ErrorCode> {
        let mut w = Writer::new(out);
        self.encode(&mut w)?;
        Ok(w.len())
    }

    /// The encoding in a new vector.
    #[cfg(feature = "std")]
    fn get_encoding(&self) -> Result<std::vec::Vec<u8>, ErrorCode> {
        let mut out = std::vec::Vec::new();
        self.encode(&mut Writer::growing(&mut out))?;
        Ok(out)
    }
}

/// Reads fields in order from a byte slice, failing with [`ErrorCode::BadLength`] on a short read.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorCode> {
        if self.buf.len() < n {
            return Err(ErrorCode::BadLength);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ErrorCode> {
        Ok(*self.array_ref()?)
    }

    /// Takes the next `N` bytes as a borrowed array (no copy).
    pub fn array_ref<const N: usize>(&mut self) -> Result<&'a [u8; N], ErrorCode> {
        self.take(N)?.try_into().map_err(|_| ErrorCode::BadLength)
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> Result<u8, ErrorCode> {
        Ok(self.take(1)?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16, ErrorCode> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, ErrorCode> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64, ErrorCode> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The bytes not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed: trailing bytes mean a malformed message.
    pub fn finish(self) -> Result<(), ErrorCode> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ErrorCode::BadLength)
        }
    }
}

enum Out<'a> {
    Slice(&'a mut [u8]),
    #[cfg(feature = "std")]
    Vec(&'a mut std::vec::Vec<u8>),
}

/// Writes fields in order into a byte slice, failing with [`ErrorCode::BadLength`] when full
/// (with `std`, [`Writer::growing`] appends to a vector instead).
pub struct Writer<'a> {
    out: Out<'a>,
    len: usize,
}

impl<'a> Writer<'a> {
    /// Writes from the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            out: Out::Slice(buf),
            len: 0,
        }
    }

    /// Appends to `out` (which may already hold bytes: they are kept).
    #[cfg(feature = "std")]
    pub fn growing(out: &'a mut std::vec::Vec<u8>) -> Self {
        let len = out.len();
        Self {
            out: Out::Vec(out),
            len,
        }
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), ErrorCode> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(ErrorCode::BadLength)?;
        match &mut self.out {
            Out::Slice(buf) => buf
                .get_mut(self.len..end)
                .ok_or(ErrorCode::BadLength)?
                .copy_from_slice(bytes),
            #[cfg(feature = "std")]
            Out::Vec(v) => v.extend_from_slice(bytes),
        }
        self.len = end;
        Ok(())
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> Result<(), ErrorCode> {
        self.put(&[v])
    }

    /// Appends a little-endian u16.
    pub fn u16(&mut self, v: u16) -> Result<(), ErrorCode> {
        self.put(&v.to_le_bytes())
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, v: u32) -> Result<(), ErrorCode> {
        self.put(&v.to_le_bytes())
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, v: u64) -> Result<(), ErrorCode> {
        self.put(&v.to_le_bytes())
    }

    /// Appends a u16 length, then what `body` writes; the length is filled in afterwards
    /// (a body over 65,535 bytes is [`ErrorCode::BadLength`]).
    pub fn u16_prefixed(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<(), ErrorCode>,
    ) -> Result<(), ErrorCode> {
        let at = self.len;
        self.u16(0)?;
        body(self)?;
        let n = u16::try_from(self.len - at - 2).map_err(|_| ErrorCode::BadLength)?;
        self.written_mut()[at..at + 2].copy_from_slice(&n.to_le_bytes());
        Ok(())
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        match &self.out {
            Out::Slice(buf) => &buf[..self.len],
            #[cfg(feature = "std")]
            Out::Vec(v) => &v[..self.len],
        }
    }

    fn written_mut(&mut self) -> &mut [u8] {
        match &mut self.out {
            Out::Slice(buf) => &mut buf[..self.len],
            #[cfg(feature = "std")]
            Out::Vec(v) => &mut v[..self.len],
        }
    }
}

/// A fixed-size value's encoding, for the types whose layout cannot overflow its array.
pub(crate) fn to_array<'a, T: Codec<'a>, const N: usize>(value: &T) -> [u8; N] {
    let mut out = [0u8; N];
    let written = value.encode_into(&mut out);
    debug_assert_eq!(written, Ok(N), "fixed-size encoding");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair<'a> {
        tag: u8,
        body: &'a [u8],
    }

    impl<'a> Codec<'a> for Pair<'a> {
        fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
            w.u8(self.tag)?;
            w.u16_prefixed(|w| w.put(self.body))
        }
        fn read(r: &mut Reader<'a>) -> Result<Self, ErrorCode> {
            let tag = r.u8()?;
            let len = r.u16()?;
            Ok(Self {
                tag,
                body: r.take(usize::from(len))?,
            })
        }
    }

    #[test]
    fn length_prefix_is_filled_in_and_reads_back() {
        let mut out = [0u8; 16];
        let pair = Pair {
            tag: 9,
            body: b"abc",
        };
        let n = pair.encode_into(&mut out).unwrap();
        assert_eq!(&out[..n], &[9, 3, 0, b'a', b'b', b'c']);
        let back = Pair::read_bytes(&out[..n]).unwrap();
        assert_eq!((back.tag, back.body), (9, &b"abc"[..]));
        assert_eq!(pair.get_encoding().unwrap(), &out[..n]);
    }

    #[test]
    fn short_reads_full_buffers_and_trailing_bytes_are_bad_length() {
        assert_eq!(
            Pair::read_bytes(&[1, 4, 0, 0]).err(),
            Some(ErrorCode::BadLength)
        );
        assert_eq!(
            Pair::read_bytes(&[1, 0, 0, 7]).err(),
            Some(ErrorCode::BadLength)
        );
        let mut small = [0u8; 4];
        let pair = Pair {
            tag: 1,
            body: b"xy",
        };
        assert_eq!(pair.encode_into(&mut small), Err(ErrorCode::BadLength));
    }
}
