//! Update packages.
//!
//! A vendor-signed OS image (signed header + body) is encrypted **once per release** under a
//! random 32-byte content key `K`, in chunks of [`CHUNK_SIZE`] bytes of body, each with its own
//! ChaCha20-Poly1305 tag, so the device authenticates every chunk before it touches flash:
//! ```text
//! release_id = SHA-256(signed header, 128 B)
//! chunk i    = ChaCha20-Poly1305(K, nonce = 0u64 ‖ i u32,
//!                                aad = "FGUC" ‖ release_id ‖ i u32 ‖ chunk_count u32, body[i])
//! ```
//! Each device gets a small **envelope** (228 B) that only it can open:
//! ```text
//! magic "FGUP" u32 | format u32 = 2 | serial[16] | product_id u32 | chunk_size u32
//! | chunk_count u32 | package_nonce[16] | signed image header[128] | wrapped K[32] | tag[16]
//! wrap key = HKDF-SHA256(salt "flashgate-update-wrap-v1", ikm device_key,
//!                        info serial ‖ release_id ‖ package_nonce)
//! wrapped  = ChaCha20-Poly1305(wrap key, nonce 0, aad = envelope[..180], K)
//! ```
//! `package_nonce` is 16 random bytes drawn for every envelope made, so the wrap key is unique
//! per envelope and nonce 0 is used once per key: one release packaged twice for a device
//! (two campaigns, a field update and a factory install, each with its own `K`) never wraps two
//! content keys under one key and nonce (format 1 derived the key from serial ‖ release_id
//! only, and did exactly that). The vendor
//! signature inside covers version, product and the SHA-256 of the plaintext body, which the
//! device checks over the whole body before anything is installed. The host that carries
//! the package learns neither the body nor `K`.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codec::{self, Codec, Reader, Writer};
use crate::device_record::DeviceRecord;
use crate::image::{SignedImageHeader, SIGNED_HEADER_LEN};
use crate::{ErrorCode, Serial};

/// Magic of an envelope ("FGUP").
pub const ENVELOPE_MAGIC: u32 = 0x5055_4746;
/// Envelope format this build writes and accepts (2: the wrap key binds a per-package nonce).
pub const ENVELOPE_FORMAT: u32 = 2;
/// Length of the per-package nonce in the envelope (and in the wrap key's info).
pub const PACKAGE_NONCE_LEN: usize = 16;
/// Plaintext bytes per chunk (one flash page).
pub const CHUNK_SIZE: u32 = 4096;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Encoded envelope length.
pub const ENVELOPE_LEN: usize = AAD_LEN + 32 + TAG_LEN;
const AAD_LEN: usize = 4 + 4 + 16 + 4 + 4 + 4 + PACKAGE_NONCE_LEN + SIGNED_HEADER_LEN;
const WRAP_LABEL: &[u8] = b"flashgate-update-wrap-v1";
const CHUNK_MAGIC: &[u8; 4] = b"FGUC";

/// `SHA-256` of the 128-byte signed header: names a release in chunk AADs and key derivation.
pub fn release_id(signed_header: &[u8; SIGNED_HEADER_LEN]) -> [u8; 32] {
    Sha256::digest(signed_header).into()
}

/// Number of chunks a body of `body_size` bytes is cut into.
pub fn chunk_count(body_size: u32) -> u32 {
    body_size.div_ceil(CHUNK_SIZE)
}

fn chunk_nonce(index: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&index.to_le_bytes());
    Nonce::from(n)
}

fn chunk_aad(release_id: &[u8; 32], index: u32, count: u32) -> [u8; 44] {
    let mut aad = [0u8; 44];
    aad[..4].copy_from_slice(CHUNK_MAGIC);
    aad[4..36].copy_from_slice(release_id);
    aad[36..40].copy_from_slice(&index.to_le_bytes());
    aad[40..].copy_from_slice(&count.to_le_bytes());
    aad
}

fn wrap_key(
    device_key: &[u8; 32],
    serial: &Serial,
    release_id: &[u8; 32],
    package_nonce: &[u8; PACKAGE_NONCE_LEN],
) -> Zeroizing<[u8; 32]> {
    crate::kdf::derive(device_key, WRAP_LABEL, &[serial, release_id, package_nonce])
}

/// A decoded envelope (its key still wrapped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The device it is for.
    pub serial: Serial,
    /// The product it is for.
    pub product_id: u32,
    /// Plaintext bytes per chunk; must be [`CHUNK_SIZE`].
    pub chunk_size: u32,
    /// Chunks that follow.
    pub chunk_count: u32,
    /// Random per envelope: makes the wrap key unique to this envelope.
    pub package_nonce: [u8; PACKAGE_NONCE_LEN],
    /// The vendor-signed image header (signature not yet checked).
    pub signed_header: SignedImageHeader,
    /// `K` wrapped for this device, then its tag.
    pub wrapped_key: [u8; 32 + TAG_LEN],
}

impl Envelope {
    /// The bytes before the wrapped key: the AAD of the wrap.
    fn aad(&self) -> [u8; AAD_LEN] {
        let mut out = [0u8; AAD_LEN];
        let written = self.encode_aad(&mut Writer::new(&mut out));
        debug_assert!(written.is_ok(), "fixed-size encoding");
        out
    }

    fn encode_aad(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        w.u32(ENVELOPE_MAGIC)?;
        w.u32(ENVELOPE_FORMAT)?;
        w.put(&self.serial)?;
        w.u32(self.product_id)?;
        w.u32(self.chunk_size)?;
        w.u32(self.chunk_count)?;
        w.put(&self.package_nonce)?;
        self.signed_header.encode(w)
    }

    /// The encoded envelope.
    pub fn to_bytes(&self) -> [u8; ENVELOPE_LEN] {
        codec::to_array(self)
    }

    /// [`release_id`] of the image inside.
    pub fn release_id(&self) -> [u8; 32] {
        release_id(&self.signed_header.to_bytes())
    }

    /// The key `K` is wrapped under for the device holding `device_key`.
    fn wrap_key(&self, device_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        wrap_key(
            device_key,
            &self.serial,
            &self.release_id(),
            &self.package_nonce,
        )
    }

    /// Device side: decodes `payload` and checks it is addressed to this device: its serial
    /// ([`ErrorCode::WrongSerial`]: a package relayed to the wrong board) and product
    /// ([`ErrorCode::WrongProduct`]). Nothing is authenticated yet ([`Self::open`] does that).
    pub fn addressed_to(payload: &[u8], record: &DeviceRecord) -> Result<Self, ErrorCode> {
        let env = Self::read_bytes(payload)?;
        if env.serial != record.config.serial {
            return Err(ErrorCode::WrongSerial);
        }
        if env.product_id != record.config.product_id {
            return Err(ErrorCode::WrongProduct);
        }
        Ok(env)
    }

    /// Device side: unwraps `K` with the device key. A package made for another device (or
    /// altered anywhere in its envelope) is [`ErrorCode::WrongDevice`].
    pub fn open(&self, device_key: &[u8; 32]) -> Result<ContentKey, ErrorCode> {
        let kek = self.wrap_key(device_key);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&kek[..]));
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&self.wrapped_key[..32]);
        let tag = Tag::from_slice(&self.wrapped_key[32..]);
        cipher
            .decrypt_in_place_detached(&Nonce::from([0u8; 12]), &self.aad(), &mut key[..], tag)
            .map_err(|_| ErrorCode::WrongDevice)?;
        Ok(ContentKey {
            key,
            release_id: self.release_id(),
            chunk_count: self.chunk_count,
        })
    }
}

/// The 228-byte envelope (decoding checks the format only; nothing is verified).
impl Codec<'_> for Envelope {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), ErrorCode> {
        self.encode_aad(w)?;
        w.put(&self.wrapped_key)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let mut r = Reader::new(r.take(ENVELOPE_LEN)?);
        if r.u32()? != ENVELOPE_MAGIC || r.u32()? != ENVELOPE_FORMAT {
            return Err(ErrorCode::BadMagic);
        }
        let serial = r.array()?;
        let product_id = r.u32()?;
        let chunk_size = r.u32()?;
        let chunk_count = r.u32()?;
        let package_nonce = r.array()?;
        let signed_header = SignedImageHeader::read(&mut r)?;
        let wrapped_key = r.array()?;
        if chunk_size != CHUNK_SIZE || chunk_count != chunk_count_of(&signed_header) {
            return Err(ErrorCode::BadLength);
        }
        Ok(Self {
            serial,
            product_id,
            chunk_size,
            chunk_count,
            package_nonce,
            signed_header,
            wrapped_key,
        })
    }
}

fn chunk_count_of(signed: &SignedImageHeader) -> u32 {
    chunk_count(signed.header.body_size)
}

/// A release's content key with what the chunk AADs bind; zeroized on drop.
pub struct ContentKey {
    key: Zeroizing<[u8; 32]>,
    release_id: [u8; 32],
    chunk_count: u32,
}

impl ContentKey {
    /// Decrypts chunk `index` in place (`data` = ciphertext, `tag` its tag); on success `data`
    /// is the plaintext. A flipped bit anywhere is [`ErrorCode::BadTag`], nothing decrypted.
    pub fn open_chunk(&self, index: u32, data: &mut [u8], tag: &[u8]) -> Result<(), ErrorCode> {
        if index >= self.chunk_count || tag.len() != TAG_LEN {
            return Err(ErrorCode::BadOffset);
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key[..]));
        cipher
            .decrypt_in_place_detached(
                &chunk_nonce(index),
                &chunk_aad(&self.release_id, index, self.chunk_count),
                data,
                Tag::from_slice(tag),
            )
            .map_err(|_| ErrorCode::BadTag)
    }

    /// Authenticates and decrypts chunk `index` of a body of `body_size` bytes (`sealed` =
    /// ciphertext then tag) into `plain`; returns the plaintext. A chunk of the wrong length is
    /// [`ErrorCode::BadLength`]; nothing unauthenticated is ever returned.
    pub fn open_chunk_into<'p>(
        &self,
        index: u32,
        body_size: u32,
        sealed: &[u8],
        plain: &'p mut [u8; CHUNK_SIZE as usize],
    ) -> Result<&'p [u8], ErrorCode> {
        if index >= self.chunk_count {
            return Err(ErrorCode::BadOffset);
        }
        let len = (body_size - index * CHUNK_SIZE).min(CHUNK_SIZE) as usize;
        if sealed.len() != len + TAG_LEN {
            return Err(ErrorCode::BadLength);
        }
        let plain = &mut plain[..len];
        plain.copy_from_slice(&sealed[..len]);
        self.open_chunk(index, plain, &sealed[len..])?;
        Ok(plain)
    }
}

/// Coordinator side: a release encrypted once, ready to be wrapped for any number of devices.
#[cfg(feature = "std")]
pub struct SealedRelease {
    key: Zeroizing<[u8; 32]>,
    /// The vendor-signed header (128 B).
    pub signed_header: [u8; SIGNED_HEADER_LEN],
    /// Every chunk as sent on the wire: ciphertext then tag.
    pub chunks: std::vec::Vec<std::vec::Vec<u8>>,
}

#[cfg(feature = "std")]
impl SealedRelease {
    /// Encrypts the signed image `image` (header + body) under `content_key` (32 random
    /// bytes, fresh per release). The signature is not checked here; the coordinator checks it
    /// at upload, the device before it installs.
    pub fn seal(image: &[u8], content_key: Zeroizing<[u8; 32]>) -> Result<Self, ErrorCode> {
        let signed = SignedImageHeader::parse(image)?;
        let body = &image[SIGNED_HEADER_LEN..];
        if body.len() != signed.header.body_size as usize {
            return Err(ErrorCode::ImageIncomplete);
        }
        let signed_header = signed.to_bytes();
        let id = release_id(&signed_header);
        let count = chunk_count(signed.header.body_size);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&content_key[..]));
        let chunks = body
            .chunks(CHUNK_SIZE as usize)
            .enumerate()
            .map(|(i, plain)| {
                let i = i as u32;
                let mut buf = plain.to_vec();
                let tag = cipher
                    .encrypt_in_place_detached(&chunk_nonce(i), &chunk_aad(&id, i, count), &mut buf)
                    .expect("chunk within ChaCha20-Poly1305 limits");
                buf.extend_from_slice(&tag);
                buf
            })
            .collect();
        Ok(Self {
            key: content_key,
            signed_header,
            chunks,
        })
    }

    /// The content key, for storing sealed under the coordinator's KEK.
    pub fn content_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Rebuilds a sealed release from stored parts (header, chunks, unsealed key).
    pub fn from_parts(
        signed_header: [u8; SIGNED_HEADER_LEN],
        chunks: std::vec::Vec<std::vec::Vec<u8>>,
        key: Zeroizing<[u8; 32]>,
    ) -> Self {
        Self {
            key,
            signed_header,
            chunks,
        }
    }

    /// The envelope for one device: wraps `K` under a key derived from `device_key` and
    /// `package_nonce`, which the caller draws at random for every envelope it makes (16 bytes
    /// from the OS's CSPRNG; a fixed one only in test vectors).
    pub fn envelope_for(
        &self,
        serial: &Serial,
        product_id: u32,
        device_key: &[u8; 32],
        package_nonce: &[u8; PACKAGE_NONCE_LEN],
    ) -> Result<[u8; ENVELOPE_LEN], ErrorCode> {
        let signed_header = SignedImageHeader::parse(&self.signed_header)?;
        let mut env = Envelope {
            serial: *serial,
            product_id,
            chunk_size: CHUNK_SIZE,
            chunk_count: chunk_count(signed_header.header.body_size),
            package_nonce: *package_nonce,
            signed_header,
            wrapped_key: [0; 32 + TAG_LEN],
        };
        let kek = env.wrap_key(device_key);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&kek[..]));
        let mut wrapped = Zeroizing::new(*self.key);
        let tag = cipher
            .encrypt_in_place_detached(&Nonce::from([0u8; 12]), &env.aad(), &mut wrapped[..])
            .map_err(|_| ErrorCode::BadLength)?;
        env.wrapped_key[..32].copy_from_slice(&wrapped[..]);
        env.wrapped_key[32..].copy_from_slice(&tag);
        Ok(env.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{sign_image, ImageKind};
    use crate::layout::{IMAGE_HEADER_SPACE, OS_SLOT_ADDR};
    use ed25519_dalek::SigningKey;
    extern crate std;
    use std::vec::Vec;

    /// The package nonce of the test vectors (a real one is random per envelope).
    const NONCE: [u8; PACKAGE_NONCE_LEN] = [5; PACKAGE_NONCE_LEN];

    pub(crate) fn image(len: usize, version: u32) -> Vec<u8> {
        let body: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let vendor = SigningKey::from_bytes(&[9u8; 32]);
        sign_image(
            ImageKind::Os,
            7,
            version,
            OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
            &body,
            &vendor,
        )
    }

    #[test]
    fn round_trip_and_fixed_vector() {
        let img = image(5000, 2);
        let release = SealedRelease::seal(&img, Zeroizing::new([0x11; 32])).unwrap();
        assert_eq!(release.chunks.len(), 2);
        let env = release.envelope_for(&[1; 16], 7, &[3; 32], &NONCE).unwrap();
        let mut vector = env.to_vec();
        vector.extend_from_slice(&release.chunks[1]);
        assert_eq!(
            hex::encode(&vector),
            include_str!("../../vectors/update_package.hex").trim()
        );
        let key = Envelope::read_bytes(&env).unwrap().open(&[3; 32]).unwrap();
        let mut plain = Vec::new();
        for (i, c) in release.chunks.iter().enumerate() {
            let mut data = c[..c.len() - TAG_LEN].to_vec();
            key.open_chunk(i as u32, &mut data, &c[c.len() - TAG_LEN..])
                .unwrap();
            plain.extend_from_slice(&data);
        }
        assert_eq!(plain, img[SIGNED_HEADER_LEN..]);
    }

    #[test]
    fn another_device_cannot_open() {
        let release = SealedRelease::seal(&image(100, 2), Zeroizing::new([0x11; 32])).unwrap();
        let env = release.envelope_for(&[1; 16], 7, &[3; 32], &NONCE).unwrap();
        let decoded = Envelope::read_bytes(&env).unwrap();
        assert_eq!(decoded.open(&[4; 32]).err(), Some(ErrorCode::WrongDevice));
        // Re-addressing the envelope to another serial breaks the wrap too.
        let mut readdressed = env;
        readdressed[8] ^= 1;
        let decoded = Envelope::read_bytes(&readdressed).unwrap();
        assert_eq!(decoded.open(&[3; 32]).err(), Some(ErrorCode::WrongDevice));
    }

    #[test]
    fn tampered_reordered_or_foreign_chunks_are_refused() {
        let release = SealedRelease::seal(&image(9000, 2), Zeroizing::new([0x11; 32])).unwrap();
        let env = release.envelope_for(&[1; 16], 7, &[3; 32], &NONCE).unwrap();
        let key = Envelope::read_bytes(&env).unwrap().open(&[3; 32]).unwrap();
        let open = |i: u32, c: &[u8]| {
            let mut data = c[..c.len() - TAG_LEN].to_vec();
            key.open_chunk(i, &mut data, &c[c.len() - TAG_LEN..])
        };
        let mut bad = release.chunks[0].clone();
        bad[100] ^= 1;
        assert_eq!(open(0, &bad), Err(ErrorCode::BadTag));
        assert_eq!(open(1, &release.chunks[0]), Err(ErrorCode::BadTag));
        assert_eq!(open(3, &release.chunks[0]), Err(ErrorCode::BadOffset));
        // A chunk of another release under the same key does not verify (release id in AAD).
        let other = SealedRelease::seal(&image(9000, 3), Zeroizing::new([0x11; 32])).unwrap();
        assert_eq!(open(0, &other.chunks[0]), Err(ErrorCode::BadTag));
    }

    #[test]
    fn one_release_packaged_twice_for_a_device_never_reuses_a_wrap_key() {
        // Two campaigns of one release (or a factory install and a later field update), each
        // with its own content key, for the same device.
        let img = image(100, 2);
        let (k1, k2) = ([0x11; 32], [0x22; 32]);
        let a = SealedRelease::seal(&img, Zeroizing::new(k1)).unwrap();
        let b = SealedRelease::seal(&img, Zeroizing::new(k2)).unwrap();
        let envelope = |r: &SealedRelease, nonce: &[u8; PACKAGE_NONCE_LEN]| {
            Envelope::read_bytes(&r.envelope_for(&[1; 16], 7, &[3; 32], nonce).unwrap()).unwrap()
        };
        let (ea, eb) = (envelope(&a, &[1; 16]), envelope(&b, &[2; 16]));
        assert_ne!(*ea.wrap_key(&[3; 32]), *eb.wrap_key(&[3; 32]));
        // Under one key and nonce the two wrapped keys would differ by exactly K1 ^ K2 (the
        // ChaCha20 keystream cancels), and the Poly1305 one-time key would be used twice.
        let keystream_reused =
            (0..32).all(|i| ea.wrapped_key[i] ^ eb.wrapped_key[i] == k1[i] ^ k2[i]);
        assert!(
            !keystream_reused,
            "two content keys wrapped under one key and nonce"
        );
        // Each still opens on the device, to its own key.
        assert!(ea.open(&[3; 32]).is_ok() && eb.open(&[3; 32]).is_ok());
        // The nonce is bound: changing it in transit breaks the wrap.
        let mut moved = a.envelope_for(&[1; 16], 7, &[3; 32], &[1; 16]).unwrap();
        moved[40] ^= 1; // inside package_nonce (bytes 36..52)
        let moved = Envelope::read_bytes(&moved).unwrap();
        assert_eq!(moved.open(&[3; 32]).err(), Some(ErrorCode::WrongDevice));
    }
}
