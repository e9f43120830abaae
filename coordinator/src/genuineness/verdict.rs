//! The verdict on one board's hello, from what the registry holds: no store access here, so
//! every case is a unit test.
//!
//! | what the board shows | verdict |
//! | --- | --- |
//! | a serial no device of its product is registered under | unregistered |
//! | a proof that fails under the registered device key | clone suspected |
//! | a chip UID other than the certified serial | clone suspected |
//! | a boot-check refusal (0x0410–0x0413) | clone suspected |
//! | a registered certificate that no authority key of the product signed, or that names another chip or key | clone suspected |
//! | none of these | genuine |

use flashgate_protocol::certificate::DeviceCertificate;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::hello::{self, DeviceState, HelloInfo, CHALLENGE_LEN};
use flashgate_protocol::ErrorCode;

/// What the registry knows of the identity a board claims.
pub struct Registered<'a> {
    /// The registered device key (opened from its sealed form).
    pub device_key: &'a [u8; 32],
    /// The certificate issued for the chip (empty for a device registered before certificates).
    pub certificate: &'a [u8],
    /// The public halves of the product's authority keys, every generation.
    pub authority_keys: &'a [[u8; 32]],
}

/// The verdict, with the reasons a board is not genuine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Proven under the registered key, on its own chip, boot checks passed.
    Genuine,
    /// The serial it claims is not registered for its product.
    Unregistered,
    /// Another device seems to be behind the identity (non-empty reasons).
    CloneSuspected(Vec<String>),
}

/// The boot-check refusals that mean "this flash is not this chip's" (`boot::check_identity`).
fn is_identity_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UidMismatch
            | ErrorCode::BadCertificate
            | ErrorCode::CertificateMismatch
            | ErrorCode::TrustAnchorMismatch
    )
}

/// Judges `response` (to `challenge`) against `registered` (`None`: nothing registered under
/// the serial it claims). `claimed` is the response's identity, read without verification.
pub fn judge(
    challenge: &[u8; CHALLENGE_LEN],
    response: &[u8],
    claimed: &HelloInfo,
    registered: Option<&Registered<'_>>,
) -> Verdict {
    let Some(registered) = registered else {
        return Verdict::Unregistered;
    };
    let mut reasons = Vec::new();
    if let Err(code) = hello::verify_response(registered.device_key, challenge, response) {
        reasons.push(format!(
            "its proof does not verify under the registered device key ({code:?}): it does not hold this identity's key"
        ));
    }
    if !claimed.on_its_own_chip() {
        reasons.push(format!(
            "its chip UID {} is not the UID its identity was certified for ({})",
            hex::encode(claimed.chip_uid),
            hex::encode(claimed.serial)
        ));
    }
    if let DeviceState::NoValidImage { reason } = claimed.state {
        if is_identity_refusal(reason) {
            reasons.push(format!("its bootloader refused to boot: {reason}"));
        }
    }
    if let Some(why) = certificate_problem(claimed, registered) {
        reasons.push(why);
    }
    if reasons.is_empty() {
        Verdict::Genuine
    } else {
        Verdict::CloneSuspected(reasons)
    }
}

/// Why the registered certificate is not one of ours for this chip and key (`None`: it is, or
/// the device predates certificates).
fn certificate_problem(claimed: &HelloInfo, registered: &Registered<'_>) -> Option<String> {
    if registered.certificate.is_empty() {
        return None;
    }
    let Ok(certificate) = DeviceCertificate::read_bytes(registered.certificate) else {
        return Some("the registered certificate does not parse: it is not ours".into());
    };
    if !registered
        .authority_keys
        .iter()
        .any(|key| certificate.verify(key).is_ok())
    {
        return Some(
            "the registered certificate is not signed by any authority key of the product: it is not ours"
                .into(),
        );
    }
    certificate
        .check_binding(&claimed.serial, claimed.product_id, registered.device_key)
        .err()
        .map(|_| "the registered certificate names another chip, product or device key".into())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use flashgate_protocol::certificate::{key_commitment, CertificateBody};

    use super::*;

    const KEY: [u8; 32] = [0x11; 32];
    const UID: [u8; 16] = [0x22; 16];
    const CHALLENGE: [u8; 32] = [0x33; 32];

    fn authority() -> SigningKey {
        SigningKey::from_bytes(&[0x44; 32])
    }

    fn certificate(uid: [u8; 16], key: &[u8; 32]) -> Vec<u8> {
        certificate_by(&authority(), uid, key)
    }

    fn certificate_by(authority: &SigningKey, uid: [u8; 16], key: &[u8; 32]) -> Vec<u8> {
        CertificateBody {
            product_id: 7,
            unique_id: uid,
            key_commitment: key_commitment(key),
            order_ref: [0; 16],
            sequence: 1,
            issued_at_ms: 1,
        }
        .sign(authority)
        .to_bytes()
        .to_vec()
    }

    fn hello(key: &[u8; 32], chip_uid: [u8; 16], state: DeviceState) -> (HelloInfo, Vec<u8>) {
        let info = HelloInfo {
            serial: UID,
            chip_uid,
            product_id: 7,
            bootloader_version: 3,
            state,
        };
        let mut out = vec![0; hello::RESPONSE_LEN];
        hello::encode_response(key, &CHALLENGE, &info, &mut out).unwrap();
        (info, out)
    }

    fn running() -> DeviceState {
        DeviceState::OsRunning { version: 5 }
    }

    fn judge_with(info: &HelloInfo, response: &[u8], certificate: &[u8]) -> Verdict {
        let keys = [authority().verifying_key().to_bytes()];
        let registered = Registered {
            device_key: &KEY,
            certificate,
            authority_keys: &keys,
        };
        judge(&CHALLENGE, response, info, Some(&registered))
    }

    fn reasons(verdict: Verdict) -> Vec<String> {
        match verdict {
            Verdict::CloneSuspected(reasons) => reasons,
            other => panic!("expected a clone suspected, got {other:?}"),
        }
    }

    #[test]
    fn the_registered_key_on_its_own_chip_is_genuine() {
        let (info, response) = hello(&KEY, UID, running());
        assert_eq!(
            judge_with(&info, &response, &certificate(UID, &KEY)),
            Verdict::Genuine
        );
        assert_eq!(judge_with(&info, &response, &[]), Verdict::Genuine);
    }

    #[test]
    fn an_unknown_serial_is_unregistered() {
        let (info, response) = hello(&KEY, UID, running());
        assert_eq!(
            judge(&CHALLENGE, &response, &info, None),
            Verdict::Unregistered
        );
    }

    #[test]
    fn a_copy_on_another_chip_is_a_clone_with_both_reasons() {
        let (info, response) = hello(
            &KEY,
            [0x99; 16],
            DeviceState::NoValidImage {
                reason: ErrorCode::UidMismatch,
            },
        );
        let why = reasons(judge_with(&info, &response, &certificate(UID, &KEY)));
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("chip UID 9999"), "{why:?}");
        assert!(why[1].contains("0x0410"), "{why:?}");
    }

    #[test]
    fn a_proof_under_another_key_is_a_clone() {
        let (info, response) = hello(&[0x55; 32], UID, running());
        let why = reasons(judge_with(&info, &response, &certificate(UID, &KEY)));
        assert!(why[0].contains("does not verify"), "{why:?}");
        // The same answer to another challenge than the one issued fails the same way.
        let (info, response) = hello(&KEY, UID, running());
        let keys = [authority().verifying_key().to_bytes()];
        let registered = Registered {
            device_key: &KEY,
            certificate: &[],
            authority_keys: &keys,
        };
        assert!(matches!(
            judge(&[0; 32], &response, &info, Some(&registered)),
            Verdict::CloneSuspected(_)
        ));
    }

    #[test]
    fn a_certificate_refusal_or_a_foreign_certificate_is_a_clone() {
        let (info, response) = hello(
            &KEY,
            UID,
            DeviceState::NoValidImage {
                reason: ErrorCode::BadCertificate,
            },
        );
        let why = reasons(judge_with(&info, &response, &certificate(UID, &KEY)));
        assert!(why[0].contains("0x0411"), "{why:?}");

        let (info, response) = hello(&KEY, UID, running());
        let foreign = certificate_by(&SigningKey::from_bytes(&[0x66; 32]), UID, &KEY);
        let why = reasons(judge_with(&info, &response, &foreign));
        assert!(why[0].contains("not ours"), "{why:?}");
        let why = reasons(judge_with(&info, &response, &certificate([0x77; 16], &KEY)));
        assert!(why[0].contains("another chip"), "{why:?}");
    }

    #[test]
    fn an_os_refused_for_other_reasons_is_not_a_clone() {
        let (info, response) = hello(
            &KEY,
            UID,
            DeviceState::NoValidImage {
                reason: ErrorCode::BadSignature,
            },
        );
        assert_eq!(
            judge_with(&info, &response, &certificate(UID, &KEY)),
            Verdict::Genuine
        );
    }
}
