//! Little-endian encoding helpers for the fixed-layout messages.
//!
//! Every wire structure in this crate has a fixed layout (or a fixed header and a body), so a
//! bounds-checked reader and writer over byte slices is all the codec there is.

use crate::ErrorCode;

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
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
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

    /// Fails unless every byte was consumed: trailing bytes mean a malformed message.
    pub fn finish(self) -> Result<(), ErrorCode> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ErrorCode::BadLength)
        }
    }
}

/// Writes fields in order into a byte slice, failing with [`ErrorCode::BadLength`] when full.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// Writes from the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), ErrorCode> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(ErrorCode::BadLength)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(ErrorCode::BadLength)?
            .copy_from_slice(bytes);
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

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
