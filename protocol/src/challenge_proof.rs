//! Proofs a device gives under its key over a host's fresh challenge (the `hello` identity
//! proof, the update status receipt): HMAC-SHA256 keyed by HKDF(salt = label, ikm = device key,
//! info), over `label ‖ challenge ‖ body`. One construction, a label per use, so a proof of one
//! kind can never pass as another.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ErrorCode;

/// Which proof: its label (HKDF salt and MAC prefix) and HKDF info.
pub(crate) struct ProofKind {
    pub label: &'static [u8],
    pub info: &'static [u8],
}

fn mac(kind: &ProofKind, device_key: &[u8; 32], challenge: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let key = crate::kdf::derive(device_key, kind.label, &[kind.info]);
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key[..]).expect("HMAC takes any key length");
    m.update(kind.label);
    m.update(challenge);
    m.update(body);
    m
}

/// The 32-byte proof over `body` for `challenge`.
pub(crate) fn tag(
    kind: &ProofKind,
    device_key: &[u8; 32],
    challenge: &[u8],
    body: &[u8],
) -> [u8; 32] {
    mac(kind, device_key, challenge, body)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a proof in constant time; a mismatch is [`ErrorCode::BadTag`].
pub(crate) fn verify(
    kind: &ProofKind,
    device_key: &[u8; 32],
    challenge: &[u8],
    body: &[u8],
    proof: &[u8],
) -> Result<(), ErrorCode> {
    mac(kind, device_key, challenge, body)
        .verify_slice(proof)
        .map_err(|_| ErrorCode::BadTag)
}

/// `body ‖ tag(body)`: a proof carried after the body it covers (the receipts); `N` is
/// `body.len() + 32`.
pub(crate) fn append<const N: usize>(
    kind: &ProofKind,
    device_key: &[u8; 32],
    challenge: &[u8],
    body: &[u8],
) -> [u8; N] {
    debug_assert_eq!(N, body.len() + 32, "the body and its tag fill the output");
    let mut out = [0u8; N];
    out[..body.len()].copy_from_slice(body);
    out[body.len()..].copy_from_slice(&tag(kind, device_key, challenge, body));
    out
}

/// Checks a `body ‖ tag` of exactly `body_len + 32` bytes; returns the body.
pub(crate) fn verify_appended<'r>(
    kind: &ProofKind,
    device_key: &[u8; 32],
    challenge: &[u8],
    raw: &'r [u8],
    body_len: usize,
) -> Result<&'r [u8], ErrorCode> {
    if raw.len() != body_len + 32 {
        return Err(ErrorCode::BadLength);
    }
    let (body, proof) = raw.split_at(body_len);
    verify(kind, device_key, challenge, body, proof)?;
    Ok(body)
}
