//! AEAD framing for the provisioning session: ChaCha20-Poly1305 with counter nonces.
//!
//! ```text
//! frame := seq:u32le  len:u16le  ciphertext[len - 16]  tag[16]
//! nonce := 0u32 || seq as u64le          (keys are per direction, so seq alone is unique)
//! aad   := "FGSF" || seq || len
//! ```
//! The receiver checks `seq` against the next expected number before it tries the tag, so a
//! replayed frame and a frame from the future are refused with their own codes. Sealing and
//! opening work in place, without allocation, on the firmware's mailbox buffers.

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit, Nonce, Tag};

use crate::ErrorCode;

/// Bytes in front of the ciphertext.
pub const HEADER_LEN: usize = 6;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

fn nonce(seq: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&u64::from(seq).to_le_bytes());
    Nonce::from(n)
}

fn aad(header: &[u8]) -> [u8; 4 + HEADER_LEN] {
    let mut a = [0u8; 4 + HEADER_LEN];
    a[..4].copy_from_slice(b"FGSF");
    a[4..].copy_from_slice(header);
    a
}

/// Seals `buf[HEADER_LEN..HEADER_LEN + plaintext_len]` in place, writing header and tag
/// around it. Returns the frame length.
pub fn seal_in_place(
    key: &[u8; 32],
    seq: u32,
    buf: &mut [u8],
    plaintext_len: usize,
) -> Result<usize, ErrorCode> {
    let frame_len = plaintext_len + OVERHEAD;
    if buf.len() < frame_len || plaintext_len + TAG_LEN > u16::MAX as usize {
        return Err(ErrorCode::BadLength);
    }
    let (header, rest) = buf.split_at_mut(HEADER_LEN);
    header[..4].copy_from_slice(&seq.to_le_bytes());
    header[4..].copy_from_slice(&((plaintext_len + TAG_LEN) as u16).to_le_bytes());
    let (body, tail) = rest.split_at_mut(plaintext_len);
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(&nonce(seq), &aad(header), body)
        .map_err(|_| ErrorCode::BadLength)?;
    tail[..TAG_LEN].copy_from_slice(&tag);
    Ok(frame_len)
}

/// Opens a frame in place. `expected_seq` is the next sequence number the receiver accepts.
/// On success returns the plaintext range within `frame`; the caller then advances its counter.
pub fn open_in_place(
    key: &[u8; 32],
    expected_seq: u32,
    frame: &mut [u8],
) -> Result<core::ops::Range<usize>, ErrorCode> {
    if frame.len() < OVERHEAD {
        return Err(ErrorCode::BadLength);
    }
    let seq = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let len = u16::from_le_bytes([frame[4], frame[5]]) as usize;
    if len + HEADER_LEN != frame.len() {
        return Err(ErrorCode::BadLength);
    }
    if seq < expected_seq {
        return Err(ErrorCode::Replay);
    }
    if seq > expected_seq {
        return Err(ErrorCode::OutOfOrder);
    }
    let (header, rest) = frame.split_at_mut(HEADER_LEN);
    let (body, tag) = rest.split_at_mut(len - TAG_LEN);
    let tag = Tag::clone_from_slice(tag);
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(&nonce(seq), &aad(header), body, &tag)
        .map_err(|_| ErrorCode::BadTag)?;
    Ok(HEADER_LEN..HEADER_LEN + len - TAG_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(seq: u32, msg: &[u8]) -> ([u8; 64], usize) {
        let mut buf = [0u8; 64];
        buf[HEADER_LEN..HEADER_LEN + msg.len()].copy_from_slice(msg);
        let n = seal_in_place(&[7; 32], seq, &mut buf, msg.len()).unwrap();
        (buf, n)
    }

    #[test]
    fn round_trip() {
        let (mut buf, n) = sealed(3, b"hello");
        let r = open_in_place(&[7; 32], 3, &mut buf[..n]).unwrap();
        assert_eq!(&buf[r], b"hello");
    }

    #[test]
    fn fixed_vector() {
        let (buf, n) = sealed(1, b"flashgate");
        assert_eq!(
            hex::encode(&buf[..n]),
            include_str!("../vectors/sealed_frame.hex").trim()
        );
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let (buf, n) = sealed(0, b"abc");
        for bit in 0..n * 8 {
            let mut f = buf;
            f[bit / 8] ^= 1 << (bit % 8);
            let err = open_in_place(&[7; 32], 0, &mut f[..n]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ErrorCode::BadTag | ErrorCode::BadLength | ErrorCode::OutOfOrder
                ),
                "bit {bit}: {err:?}"
            );
        }
    }

    #[test]
    fn replay_and_reorder_have_their_own_codes() {
        let (mut a, n) = sealed(4, b"x");
        assert_eq!(
            open_in_place(&[7; 32], 5, &mut a[..n]),
            Err(ErrorCode::Replay)
        );
        assert_eq!(
            open_in_place(&[7; 32], 3, &mut a[..n]),
            Err(ErrorCode::OutOfOrder)
        );
    }

    #[test]
    fn wrong_key_fails_tag() {
        let (mut a, n) = sealed(0, b"x");
        assert_eq!(
            open_in_place(&[8; 32], 0, &mut a[..n]),
            Err(ErrorCode::BadTag)
        );
    }

    #[test]
    fn truncated_frame_is_bad_length() {
        let (mut a, n) = sealed(0, b"xyz");
        assert_eq!(
            open_in_place(&[7; 32], 0, &mut a[..n - 1]),
            Err(ErrorCode::BadLength)
        );
        assert_eq!(
            open_in_place(&[7; 32], 0, &mut a[..3]),
            Err(ErrorCode::BadLength)
        );
    }
}
