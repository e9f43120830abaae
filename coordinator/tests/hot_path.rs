//! The grant and issuance hot path (`provisioning::grants`, `provisioning::certificates`):
//! one store transaction per call, station records and quotas from each replica's memory,
//! the nonce consumed inside that transaction. Nothing it skips may weaken a refusal: each
//! test runs two replicas over one store, so a cached record on one is stale after the other
//! writes.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::store::embedded::EmbeddedStore;
use flashgate_coordinator::store::KvStore;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::station_auth::methods;
use flashgate_proto::v1::{self, station_service_client::StationServiceClient};
use rand_core::{OsRng, RngCore};
use tonic::transport::Channel;
use tonic::Code;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::support::{channel, now_ms, random_serial, SimStation};

/// Two coordinator replicas over one embedded store, with the same keys.
async fn replicas() -> (TestCoordinator, TestCoordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let signing = SigningKey::generate(&mut OsRng);
    let mut kek = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut kek[..]);
    let a = TestCoordinator::start(
        store.clone(),
        test_config(),
        signing.clone(),
        Kek::new(kek.clone()),
    )
    .await
    .unwrap();
    let b = TestCoordinator::start(store, test_config(), signing, Kek::new(kek))
        .await
        .unwrap();
    (a, b, dir)
}

/// An approved station connected to `a`, and a client of the same station to `b`.
async fn station(
    a: &TestCoordinator,
    b: &TestCoordinator,
) -> (SimStation, StationServiceClient<Channel>) {
    let mut station = SimStation::to(a).await;
    station.enrol().await.unwrap();
    a.approve(&station.id()).await.unwrap();
    let to_b = StationServiceClient::new(
        channel(&b.endpoint, &b.ca_pem, Some(&station.signing_key))
            .await
            .unwrap(),
    );
    (station, to_b)
}

/// Two replicas, one approved station reaching both, an order of 10 of `product` for it.
async fn one_station_order(
    product: u32,
) -> (
    TestCoordinator,
    TestCoordinator,
    tempfile::TempDir,
    SimStation,
    StationServiceClient<Channel>,
    v1::Order,
) {
    let (a, b, dir) = replicas().await;
    let (s, to_b) = station(&a, &b).await;
    let vendor = SigningKey::generate(&mut OsRng);
    let order = a
        .create_demo_order(product, &vendor, vec![s.id()], 10)
        .await
        .unwrap();
    (a, b, dir, s, to_b, order)
}

async fn order_status(tc: &TestCoordinator, order_id: &str) -> v1::OrderStatus {
    tc.operator_client()
        .await
        .unwrap()
        .get_order_status(tc.operator_request(v1::GetOrderStatusRequest {
            order_id: order_id.into(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn audit_ok(tc: &TestCoordinator) {
    let report = tc
        .access_client()
        .await
        .unwrap()
        .verify_audit(tc.operator_request(v1::VerifyAuditRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{:?}", report.problems);
}

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(needle), "{status:?}");
}

/// `s`'s signed request for the certificate of a fresh chip under `lease_id`.
fn issue_request(
    s: &SimStation,
    lease_id: &str,
) -> tonic::Request<v1::IssueDeviceCertificateRequest> {
    s.signer.sign(
        methods::ISSUE_DEVICE_CERTIFICATE,
        v1::IssueDeviceCertificateRequest {
            lease_id: lease_id.to_owned(),
            serial: random_serial().to_vec(),
            loader_public_key: PublicKey::from(&StaticSecret::random_from_rng(OsRng))
                .to_bytes()
                .to_vec(),
        },
    )
}

fn nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_grant_or_issue_is_refused_on_every_replica_granted_or_not() {
    let (a, b, _dir, mut s, mut to_b, order) = one_station_order(3).await;
    let acquire = v1::AcquireLeaseRequest {
        order_id: order.order_id.clone(),
        count: 2,
        ..Default::default()
    };
    let (at, n) = (now_ms() as u64, nonce());
    let signed = || {
        s.signer
            .sign_with(methods::ACQUIRE_LEASE, acquire.clone(), at, n)
    };
    let lease = s.client.acquire_lease(signed()).await.unwrap();
    refused(
        s.client.acquire_lease(signed()).await,
        Code::Unauthenticated,
        "replayed",
    );
    refused(
        to_b.acquire_lease(signed()).await,
        Code::Unauthenticated,
        "replayed",
    );
    assert_eq!(order_status(&b, &order.order_id).await.reserved, 2);

    // A request refused for want of slots consumed its nonce too: replayed once slots are
    // back, it is still refused.
    let greedy = v1::AcquireLeaseRequest {
        count: 9,
        ..acquire.clone()
    };
    let (at, n) = (now_ms() as u64, nonce());
    let [first, again_on_b, again_on_a] = [(); 3].map(|()| {
        s.signer
            .sign_with(methods::ACQUIRE_LEASE, greedy.clone(), at, n)
    });
    refused(
        s.client.acquire_lease(first).await,
        Code::ResourceExhausted,
        "slots left",
    );
    let lease = lease.into_inner().lease.unwrap();
    let lease_id = verify_signed_lease(&lease, &a.coordinator.lease_verifying_key())
        .unwrap()
        .lease_id;
    s.return_lease(&lease_id).await.unwrap();
    refused(
        to_b.acquire_lease(again_on_b).await,
        Code::Unauthenticated,
        "replayed",
    );
    refused(
        s.client.acquire_lease(again_on_a).await,
        Code::Unauthenticated,
        "replayed",
    );
    assert_eq!(order_status(&a, &order.order_id).await.remaining, 10);

    // Issuance: replayed on either replica, refused; one device, one slot.
    let lease = s.acquire(&order.order_id, 3, 0).await.unwrap();
    let lease_id = verify_signed_lease(&lease, &a.coordinator.lease_verifying_key())
        .unwrap()
        .lease_id;
    let issue = v1::IssueDeviceCertificateRequest {
        lease_id,
        serial: random_serial().to_vec(),
        loader_public_key: PublicKey::from(&StaticSecret::random_from_rng(OsRng))
            .to_bytes()
            .to_vec(),
    };
    let (at, n) = (now_ms() as u64, nonce());
    let signed = || {
        s.signer
            .sign_with(methods::ISSUE_DEVICE_CERTIFICATE, issue.clone(), at, n)
    };
    s.client.issue_device_certificate(signed()).await.unwrap();
    refused(
        to_b.issue_device_certificate(signed()).await,
        Code::Unauthenticated,
        "replayed",
    );
    refused(
        s.client.issue_device_certificate(signed()).await,
        Code::Unauthenticated,
        "replayed",
    );
    assert_eq!(order_status(&b, &order.order_id).await.consumed, 1);
    audit_ok(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_revoked_on_one_replica_is_refused_at_once_by_another_that_cached_it() {
    let (a, b, _dir, mut s, mut to_b, order) = one_station_order(4).await;
    let acquire = |s: &SimStation| {
        s.signer.sign(
            methods::ACQUIRE_LEASE,
            v1::AcquireLeaseRequest {
                order_id: order.order_id.clone(),
                count: 2,
                ..Default::default()
            },
        )
    };
    // b grants (and so caches the approved station, the quota, the lease) ...
    let lease = to_b.acquire_lease(acquire(&s)).await.unwrap().into_inner();
    let lease_id = verify_signed_lease(&lease.lease.unwrap(), &b.coordinator.lease_verifying_key())
        .unwrap()
        .lease_id;
    to_b.issue_device_certificate(issue_request(&s, &lease_id))
        .await
        .unwrap();
    // ... then a revokes it: b refuses its very next grant and issue, and writes nothing.
    a.operator_client()
        .await
        .unwrap()
        .revoke_station(a.operator_request(v1::RevokeStationRequest { station_id: s.id() }))
        .await
        .unwrap();
    refused(
        to_b.acquire_lease(acquire(&s)).await,
        Code::PermissionDenied,
        "revoked",
    );
    refused(
        to_b.issue_device_certificate(issue_request(&s, &lease_id))
            .await,
        Code::PermissionDenied,
        "revoked",
    );
    let status = order_status(&b, &order.order_id).await;
    assert_eq!((status.reserved, status.consumed), (1, 1));
    // Approved again (on a), b grants again.
    a.approve(&s.id()).await.unwrap();
    to_b.acquire_lease(acquire(&s)).await.unwrap();
    s.acquire(&order.order_id, 1, 0).await.unwrap();
    audit_ok(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_stations_on_two_replicas_get_exactly_the_order_and_the_audit_verifies() {
    const ORDER: u64 = 50;
    let (a, b, _dir) = replicas().await;
    let mut stations = Vec::new();
    for _ in 0..16 {
        stations.push(station(&a, &b).await);
    }
    let vendor = SigningKey::generate(&mut OsRng);
    let ids = stations.iter().map(|(s, _)| s.id()).collect();
    let order = a.create_demo_order(5, &vendor, ids, ORDER).await.unwrap();
    let key = a.coordinator.lease_verifying_key();
    let mut tasks = Vec::new();
    for (i, (s, to_b)) in stations.into_iter().enumerate() {
        let order_id = order.order_id.clone();
        tasks.push(tokio::spawn(async move {
            let (mut s, mut to_b) = (s, to_b);
            let mut leases = Vec::new();
            loop {
                let request = s.signer.sign(
                    methods::ACQUIRE_LEASE,
                    v1::AcquireLeaseRequest {
                        order_id: order_id.clone(),
                        count: 2,
                        ..Default::default()
                    },
                );
                let granted = if i % 2 == 0 {
                    s.client.acquire_lease(request).await
                } else {
                    to_b.acquire_lease(request).await
                };
                match granted {
                    Ok(lease) => leases.push(lease.into_inner().lease.unwrap()),
                    Err(status) if status.code() == Code::ResourceExhausted => break,
                    Err(status) => panic!("{status:?}"),
                }
            }
            (s, to_b, leases)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    let granted: u32 = all
        .iter()
        .flat_map(|(_, _, leases)| leases)
        .map(|l| verify_signed_lease(l, &key).unwrap().count)
        .sum();
    assert_eq!(u64::from(granted), ORDER);
    let status = order_status(&b, &order.order_id).await;
    assert_eq!((status.remaining, status.reserved), (0, ORDER));

    // One station's lease of 2, issued from both replicas at once for 6 chips: exactly 2.
    let lucky = all.iter().position(|(_, _, l)| !l.is_empty()).unwrap();
    let (mut s, mut to_b, leases) = all.swap_remove(lucky);
    let lease_id = verify_signed_lease(&leases[0], &key).unwrap().lease_id;
    let mut certified = 0;
    for round in 0..3 {
        let (on_a, on_b) = (issue_request(&s, &lease_id), issue_request(&s, &lease_id));
        let (x, y) = tokio::join!(
            s.client.issue_device_certificate(on_a),
            to_b.issue_device_certificate(on_b)
        );
        for result in [x, y] {
            match result {
                Ok(_) => certified += 1,
                Err(status) => {
                    assert_eq!(
                        status.code(),
                        Code::ResourceExhausted,
                        "round {round}: {status:?}"
                    )
                }
            }
        }
    }
    assert_eq!(certified, 2);
    assert_eq!(order_status(&a, &order.order_id).await.consumed, 2);
    audit_ok(&a).await;
}
