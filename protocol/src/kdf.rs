//! Purpose-bound keys from the device key, which is never used raw: HKDF-SHA256 with the
//! purpose's label as salt (the update wrap key, the receipt and hello proof keys).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// HKDF-SHA256(salt = `label`, ikm = `device_key`, info = the concatenation of `info`).
pub(crate) fn derive(device_key: &[u8; 32], label: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(Some(label), device_key);
    // 32 bytes of SHA-256 HKDF output: cannot fail.
    let _ = hk.expand_multi_info(info, &mut out[..]);
    out
}
