//! Test support for the factory's OS install (issue 18): [`TestPackages`], a package source that
//! plays the coordinator's `GetFactoryPackage` for the station's flow run without one (as a
//! program embedding the flow may), [`provision_with_os`], and [`Leaks`], the search of a
//! recording for any window of an image — raw, hex or base64.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_protocol::update::package::SealedRelease;
use flashgate_protocol::update::receipt::CHALLENGE_LEN;
use flashgate_protocol::Serial;
use flashgate_station::events::{EventFormat, EventSink};
use flashgate_station::provisioning::{
    run_target, CertificateIssuer, FactoryPackage, Failed, Job, OrderPlan, OsInstall, PackageError,
    PackageSource, Provisioned,
};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::authority::test_device_key;
use crate::bay::TestBay;

/// Packages of one signed OS image, made per board under the key a
/// [`TestAuthority`](crate::authority::TestAuthority) certified it with ([`test_device_key`]).
pub struct TestPackages {
    release: SealedRelease,
    product_id: u32,
    version: u32,
    /// Address every package to this chip instead of the one asked for (a package relayed to
    /// the wrong board).
    readdress: Option<(Serial, Zeroizing<[u8; 32]>)>,
    /// The challenges handed out, per serial asked for.
    pub issued: Mutex<Vec<(Serial, [u8; CHALLENGE_LEN])>>,
}

impl TestPackages {
    /// Packages of `signed_os` (version `version` of product `product_id`) for the boards a
    /// test authority of that product certified.
    pub fn new(signed_os: &[u8], product_id: u32, version: u32) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut k[..]);
        Self {
            release: SealedRelease::seal(signed_os, k).expect("a signed OS seals"),
            product_id,
            version,
            readdress: None,
            issued: Mutex::default(),
        }
    }

    /// Every package made for chip `serial` (with its key `key`), whatever board asks.
    pub fn for_chip(mut self, serial: Serial, key: Zeroizing<[u8; 32]>) -> Self {
        self.readdress = Some((serial, key));
        self
    }

    /// The release's ciphertext chunks (what a station may see).
    pub fn chunks(&self) -> &[Vec<u8>] {
        &self.release.chunks
    }
}

impl PackageSource for TestPackages {
    fn factory_package(
        &self,
        _lease_id: &str,
        serial: &Serial,
        _timeout: Duration,
    ) -> Result<FactoryPackage, PackageError> {
        let (to, key) = match &self.readdress {
            Some((to, key)) => (*to, key.clone()),
            None => (*serial, test_device_key(self.product_id, serial)),
        };
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let envelope = self
            .release
            .envelope_for(&to, self.product_id, &key, &nonce)
            .map_err(|e| PackageError::Malformed(e.to_string()))?;
        let mut challenge = [0u8; CHALLENGE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        self.issued.lock().unwrap().push((*serial, challenge));
        Ok(FactoryPackage {
            version: self.version,
            envelope: envelope.to_vec(),
            chunks: self.release.chunks.clone(),
            challenge,
        })
    }
}

/// Runs the station's per-target flow on the next board of `bay`, the order's OS from
/// `packages` installed after the lock.
pub fn provision_with_os(
    bay: &mut TestBay,
    plan: OrderPlan,
    issuer: Arc<dyn CertificateIssuer>,
    version: u32,
    packages: Arc<dyn PackageSource>,
    step_timeout: Duration,
) -> Result<Provisioned, Failed> {
    let job = Job {
        plan: Arc::new(plan.with_os(version)),
        issuer,
        lease_id: "e2e-lease".into(),
        os: Some(OsInstall { version, packages }),
    };
    run_target(bay, &job, step_timeout, &EventSink::new(EventFormat::Quiet))
}

/// The 32-byte windows of an image a recording must not hold, and the search for them.
pub struct Leaks {
    windows: Vec<(usize, Vec<u8>)>,
}

impl Leaks {
    /// Windows of `image` every `step` bytes, skipping uniform ones (padding) and any that also
    /// occurs in one of `public` (code shared with public images legitimately crosses links).
    pub fn windows_of(image: &[u8], step: usize, public: &[&[u8]]) -> Self {
        let windows = (0..image.len().saturating_sub(32))
            .step_by(step)
            .map(|start| (start, &image[start..start + 32]))
            .filter(|(_, w)| !w.iter().all(|b| *b == w[0]))
            .filter(|(_, w)| !public.iter().any(|p| p.windows(32).any(|x| x == *w)))
            .map(|(start, w)| (start, w.to_vec()))
            .collect();
        Self { windows }
    }

    /// How many windows are searched.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// True if no window is searched.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The offsets of the windows `hay` holds, in any form: raw, hex (either case) or base64
    /// (at each of the three alignments a window can take in a base64 stream).
    pub fn found_in(&self, hay: &[u8]) -> Vec<usize> {
        let forms: Vec<(usize, Vec<Vec<u8>>)> = self
            .windows
            .iter()
            .map(|(start, w)| (*start, forms(w)))
            .collect();
        // Every substring of `hay` of each form's length, once: the search is then linear.
        let mut seen: HashMap<usize, HashSet<&[u8]>> = HashMap::new();
        for len in forms.iter().flat_map(|(_, f)| f.iter().map(Vec::len)) {
            seen.entry(len)
                .or_insert_with(|| hay.windows(len).collect());
        }
        forms
            .iter()
            .filter(|(_, f)| f.iter().any(|f| seen[&f.len()].contains(f.as_slice())))
            .map(|(start, _)| *start)
            .collect()
    }
}

/// `needle` raw, hex and base64 (three alignments), as a recording may hold it.
fn forms(needle: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![
        needle.to_vec(),
        hex::encode(needle).into_bytes(),
        hex::encode_upper(needle).into_bytes(),
    ];
    for shift in 0..3 {
        // 27 bytes at a 3-byte boundary of the stream encode to 36 characters whatever follows.
        forms.push(base64(&needle[shift..shift + 27]));
    }
    forms
}

/// True when `hay` holds `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Standard base64 without padding of `bytes` (a multiple of 3 long).
fn base64(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bytes
        .chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            (0..4)
                .rev()
                .map(move |i| ALPHABET[((n >> (6 * i)) & 63) as usize])
        })
        .collect()
}

/// Every file under `dir`, concatenated (a station's state directory after a run).
pub fn files_under(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return all;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            all.extend(bytes);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b"Man"), b"TWFu");
        assert_eq!(base64(b"\xff\xff\xfe"), b"///+");
    }
}
