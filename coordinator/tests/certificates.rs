//! Device certificates on a real etcd: the exact count against a station that tries for more,
//! idempotent re-issue, and the install proof the coordinator (not the station) verifies.

use std::collections::BTreeSet;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::v1;
use flashgate_protocol::certificate::DeviceCertificate;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::hello::{self, DeviceState, HelloInfo};
use rand_core::OsRng;
use tonic::Code;
use x25519_dalek::StaticSecret;

use crate::support::{now_ms, random_serial, EtcdProcess, SimStation};

/// Another connection of the same station (a probe of its own, same key).
fn probe_of(station: &SimStation) -> SimStation {
    SimStation {
        signer: flashgate_proto::station_auth::StationSigner::new(station.signing_key.clone()),
        signing_key: station.signing_key.clone(),
        x25519: station.x25519.clone(),
        client: station.client.clone(),
    }
}

async fn started() -> (
    EtcdProcess,
    TestCoordinator,
    SimStation,
    v1::Order,
    SigningKey,
) {
    let etcd = EtcdProcess::start();
    let store = Arc::new(etcd.store("/certificates/").await);
    let tc = TestCoordinator::start(
        store,
        test_config(),
        SigningKey::generate(&mut OsRng),
        Kek::generate(),
    )
    .await
    .unwrap();
    let vendor = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::connect(&tc.endpoint, &tc.ca_pem).await;
    station.enrol().await.unwrap();
    tc.approve(&station.id()).await.unwrap();
    let order = tc
        .create_demo_order(7, &vendor, vec![station.id()], 6)
        .await
        .unwrap();
    (etcd, tc, station, order, vendor)
}

async fn device_count(tc: &TestCoordinator) -> usize {
    tc.operator_client()
        .await
        .unwrap()
        .list_devices(tc.operator_request(v1::ListDevicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .devices
        .len()
}

/// The bound on a fully compromised station: every certificate is one lease slot. Four probes
/// race for the certificates of N + 1 chips, each asking twice (injected retries); exactly N
/// certificates exist afterwards, with N distinct sequence numbers, and the last chip is
/// refused with nothing registered for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_station_gets_exactly_n_certificates() {
    let (_etcd, tc, station, order, _vendor) = started().await;
    const N: u32 = 6;
    let mut s = probe_of(&station);
    let lease = verify_signed_lease(
        &s.acquire(&order.order_id, N, 0).await.unwrap(),
        &tc.coordinator.lease_verifying_key(),
    )
    .unwrap();
    let chips: Vec<[u8; 16]> = (0..=N).map(|_| random_serial()).collect();
    let mut tasks = Vec::new();
    for probe in 0..4 {
        let mut p = probe_of(&station);
        let lease_id = lease.lease_id.clone();
        let mine: Vec<[u8; 16]> = chips.iter().skip(probe).step_by(4).copied().collect();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for chip in mine {
                // First try and a retry (the answer "lost"): both must name one certificate.
                let first = p.certify(&lease_id, chip).await;
                let retry = p.certify(&lease_id, chip).await;
                out.push((chip, first, retry));
            }
            out
        }));
    }
    let mut certified = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        for (chip, first, retry) in task.await.unwrap() {
            match (first, retry) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(
                        a.certificate, b.certificate,
                        "a retry gets the same certificate"
                    );
                    assert!(b.reissued && !a.reissued);
                    certified.push((chip, a));
                }
                (Err(a), Err(b)) => {
                    assert_eq!(
                        (a.code(), b.code()),
                        (Code::ResourceExhausted, Code::ResourceExhausted),
                        "{a:?}"
                    );
                    refused.push(chip);
                }
                other => panic!("a chip certified on one try only: {other:?}"),
            }
        }
    }
    assert_eq!(certified.len(), N as usize, "exactly N certificates");
    assert_eq!(refused.len(), 1, "the N+1st chip is refused");
    let sequences: BTreeSet<u32> = certified
        .iter()
        .map(|(chip, c)| {
            let cert = DeviceCertificate::read_bytes(&c.certificate).unwrap();
            assert_eq!(cert.body.unique_id, *chip);
            cert.body.sequence
        })
        .collect();
    assert_eq!(sequences, (1..=N).collect::<BTreeSet<_>>());
    assert_eq!(device_count(&tc).await, N as usize);
    let not_there = tc
        .coordinator
        .provisioning()
        .registry
        .device(
            flashgate_coordinator::ids::ProductId(7),
            flashgate_coordinator::ids::Serial(refused[0]),
        )
        .await
        .unwrap();
    assert!(
        not_there.is_none(),
        "nothing registered for the refused chip"
    );

    // Another station cannot use this lease, nor re-key a chip certified here.
    let mut other = SimStation::connect(&tc.endpoint, &tc.ca_pem).await;
    other.enrol().await.unwrap();
    tc.approve(&other.id()).await.unwrap();
    let status = other
        .certify(&lease.lease_id, random_serial())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A low-order loader key is refused (a key sealed to it would be public).
    let request = s.signer.sign(
        flashgate_proto::station_auth::methods::ISSUE_DEVICE_CERTIFICATE,
        v1::IssueDeviceCertificateRequest {
            lease_id: lease.lease_id.clone(),
            serial: chips[0].to_vec(),
            loader_public_key: [0u8; 32].to_vec(),
        },
    );
    let status = s
        .client
        .issue_device_certificate(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    tc.stop().await;
}

/// The report is proven by the device, not by the station: a hello under the device key to
/// the issued challenge marks it INSTALLED; a forged proof or a hello from another chip is
/// refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_is_proven_by_the_device_hello() {
    let (_etcd, tc, station, order, _vendor) = started().await;
    let mut s = probe_of(&station);
    let lease = verify_signed_lease(
        &s.acquire(&order.order_id, 2, 0).await.unwrap(),
        &tc.coordinator.lease_verifying_key(),
    )
    .unwrap();
    let serial = random_serial();
    let loader = StaticSecret::random_from_rng(OsRng);
    let issued = s
        .certify_to(&lease.lease_id, serial, &loader)
        .await
        .unwrap();
    let certificate = DeviceCertificate::read_bytes(&issued.certificate).unwrap();
    let key = flashgate_protocol::device_key_transport::open(
        &loader,
        &serial,
        &certificate,
        &issued.sealed_device_key.as_slice().try_into().unwrap(),
    )
    .unwrap();
    let challenge: [u8; 32] = issued.hello_challenge.as_slice().try_into().unwrap();
    let info = |chip_uid| HelloInfo {
        serial,
        chip_uid,
        product_id: 7,
        bootloader_version: 1,
        state: DeviceState::NoValidImage {
            reason: flashgate_protocol::ErrorCode::NoValidImage,
        },
    };
    let report = |response: Vec<u8>| v1::ReportInstallRequest {
        lease_id: lease.lease_id.clone(),
        serial: serial.to_vec(),
        bootloader_version: 1,
        outcome: v1::InstallOutcome::Provisioned as i32,
        installed_at_ms: now_ms(),
        hello_challenge: challenge.to_vec(),
        hello_response: response,
        ..Default::default()
    };
    let respond = |key: &[u8; 32], info: HelloInfo| {
        let mut out = vec![0u8; hello::RESPONSE_LEN];
        let n = hello::encode_response(key, &challenge, &info, &mut out).unwrap();
        out.truncate(n);
        out
    };
    let forged = respond(&[7; 32], info(serial));
    let status = s.report_raw(report(forged)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let clone = respond(&key, info(random_serial()));
    let status = s.report_raw(report(clone)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let genuine = respond(&key, info(serial));
    let device = s.report_raw(report(genuine)).await.unwrap().device.unwrap();
    assert_eq!(device.state, v1::DeviceState::Installed as i32);
    assert_eq!(device.certificate, issued.certificate);
    tc.stop().await;
}
