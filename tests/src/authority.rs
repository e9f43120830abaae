//! A product authority in the test process, standing in for the coordinator's
//! `IssueDeviceCertificate` in the tests that run the station's flow without a coordinator.
//! Device keys are derived from the serial ([`test_device_key`]) so a test can recompute any
//! board's key; the coordinator draws them at random.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use flashgate_protocol::certificate::{key_commitment, order_ref, CertificateBody};
use flashgate_protocol::device_key_transport;
use flashgate_protocol::Serial;
use flashgate_station::provisioning::{CertificateIssuer, IssueError, IssuedCertificate};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The key every test board of `product_id` with `serial` gets from a [`TestAuthority`].
pub fn test_device_key(product_id: u32, serial: &Serial) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"flashgate-test-device-key");
    h.update(product_id.to_le_bytes());
    h.update(serial);
    Zeroizing::new(h.finalize().into())
}

/// Certifies chips of one product under `authority`, at most `allowance` of them (like a
/// lease), idempotently per chip.
#[derive(Debug)]
pub struct TestAuthority {
    authority: SigningKey,
    product_id: u32,
    allowance: u32,
    issued: Mutex<BTreeMap<Serial, IssuedCertificate>>,
}

impl TestAuthority {
    /// An authority for `product_id` that certifies any number of chips.
    pub fn new(authority: SigningKey, product_id: u32) -> Self {
        Self::with_allowance(authority, product_id, u32::MAX)
    }

    /// One that certifies at most `allowance` chips.
    pub fn with_allowance(authority: SigningKey, product_id: u32, allowance: u32) -> Self {
        Self {
            authority,
            product_id,
            allowance,
            issued: Mutex::new(BTreeMap::new()),
        }
    }

    /// How many chips it certified.
    pub fn issued(&self) -> usize {
        self.issued.lock().unwrap().len()
    }
}

impl CertificateIssuer for TestAuthority {
    fn issue(
        &self,
        lease_id: &str,
        serial: &Serial,
        loader_public: &[u8; 32],
    ) -> Result<IssuedCertificate, IssueError> {
        let mut issued = self.issued.lock().unwrap();
        let device_key = test_device_key(self.product_id, serial);
        let known = issued.get(serial).cloned();
        let (certificate, hello_challenge, reissued) = match known {
            Some(c) => (c.certificate, c.hello_challenge, true),
            None => {
                if issued.len() as u64 >= u64::from(self.allowance) {
                    return Err(IssueError::Refused(format!(
                        "all {} certificates of the allowance are issued",
                        self.allowance
                    )));
                }
                let certificate = CertificateBody {
                    product_id: self.product_id,
                    unique_id: *serial,
                    key_commitment: key_commitment(&device_key),
                    order_ref: order_ref(lease_id),
                    sequence: issued.len() as u32 + 1,
                    issued_at_ms: 0,
                }
                .sign(&self.authority);
                let mut challenge = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut challenge);
                (certificate, challenge, false)
            }
        };
        let sealed_device_key = device_key_transport::seal(
            loader_public,
            serial,
            &certificate,
            &device_key,
            &mut rand::rngs::OsRng,
        )
        .map_err(|code| IssueError::Refused(format!("cannot seal: {code:?}")))?;
        let answer = IssuedCertificate {
            certificate,
            sealed_device_key,
            hello_challenge,
            reissued,
        };
        issued.entry(*serial).or_insert_with(|| answer.clone());
        Ok(answer)
    }
}
