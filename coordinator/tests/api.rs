//! The API end to end over loopback gRPC, on the embedded store and on a real etcd: the happy
//! path, device key recovery, and every refusal with its status code and unchanged state.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_coordinator::CoordinatorConfig;
use flashgate_proto::lease::{verify_signed_lease, LeaseError};
use flashgate_proto::station_auth::methods;
use flashgate_proto::v1;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::image::{sign_image, ImageKind};
use prost::Message;
use rand_core::OsRng;
use tonic::Code;

use crate::support::{now_ms, random_serial, EtcdProcess, SimStation};

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        report_grace: Duration::from_millis(1500),
        ..test_config()
    }
}

struct Fixture {
    tc: TestCoordinator,
    vendor: SigningKey,
    station: SimStation,
    order: v1::Order,
}

/// (remaining, reserved, consumed, devices registered)
async fn snapshot(f: &Fixture) -> (u64, u64, u64, usize) {
    let mut op = f.tc.operator_client().await.unwrap();
    let status = op
        .get_order_status(f.tc.operator_request(v1::GetOrderStatusRequest {
            order_id: f.order.order_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let devices = op
        .list_devices(f.tc.operator_request(v1::ListDevicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .devices
        .len();
    (status.remaining, status.reserved, status.consumed, devices)
}

/// The order's `failed` count.
async fn failed_count(f: &Fixture) -> u64 {
    f.tc.operator_client()
        .await
        .unwrap()
        .get_order_status(f.tc.operator_request(v1::GetOrderStatusRequest {
            order_id: f.order.order_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .failed
}

async fn fixture(tc: TestCoordinator) -> Fixture {
    let vendor = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::to(&tc).await;
    let enrolled = station.enrol().await.unwrap();
    assert_eq!(enrolled.station_id, station.id());
    assert_eq!(enrolled.state, v1::StationState::Pending as i32);
    tc.approve(&station.id()).await.unwrap();
    let order = tc
        .create_demo_order(7, &vendor, vec![station.id()], 10)
        .await
        .unwrap();
    Fixture {
        tc,
        vendor,
        station,
        order,
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} lacks {needle:?}",
        status.message()
    );
}

async fn happy_path_and_refusals(mut f: Fixture) {
    let coordinator_key = f.tc.coordinator.lease_verifying_key();
    let signed = f.station.acquire(&f.order.order_id, 3, 0).await.unwrap();
    let lease = verify_signed_lease(&signed, &coordinator_key).unwrap();
    assert_eq!(
        (lease.count, lease.product_id, lease.station_id.clone()),
        (3, 7, f.station.id())
    );

    // Device key: what only the chip's loader can open is what the coordinator recovers.
    let serial = random_serial();
    let loader = x25519_dalek::StaticSecret::random_from_rng(OsRng);
    let issued = f
        .station
        .certify_to(&lease.lease_id, serial, &loader)
        .await
        .unwrap();
    assert_eq!(
        issued.remaining_in_lease, 2,
        "the certificate took the slot"
    );
    let certificate =
        flashgate_protocol::certificate::DeviceCertificate::read_bytes(&issued.certificate)
            .unwrap();
    let opened = flashgate_protocol::device_key_transport::open(
        &loader,
        &serial,
        &certificate,
        &issued.sealed_device_key.as_slice().try_into().unwrap(),
    )
    .unwrap();
    let reported = f
        .station
        .report_only(&lease.lease_id, serial, now_ms())
        .await
        .unwrap();
    assert_eq!(reported.remaining_in_lease, 2);
    let recovered =
        f.tc.coordinator
            .provisioning()
            .registry
            .device_key(7, &serial)
            .await
            .unwrap();
    assert_eq!(*opened, *recovered);
    assert_eq!(snapshot(&f).await, (7, 2, 1, 1));
    // The signed lease names the product's vendor key.
    assert_eq!(
        lease.vendor_public_key,
        f.vendor.verifying_key().to_bytes().to_vec()
    );

    // Failed targets: recorded, counted in `failed`, never registered, no slot consumed.
    let reworked = random_serial();
    let failed_report = |serial: Vec<u8>, reason: &str, at: i64| v1::ReportInstallRequest {
        lease_id: lease.lease_id.clone(),
        serial,
        bootloader_version: 1,
        test_result: Some(v1::TestResult {
            outcome: v1::TestOutcome::Fail as i32,
            log: "gpio test: FAIL".into(),
        }),
        outcome: v1::InstallOutcome::Failed as i32,
        installed_at_ms: at,
        failure_reason: reason.into(),
        ..Default::default()
    };
    let failed_at = now_ms();
    let response = f
        .station
        .report_raw(failed_report(
            reworked.to_vec(),
            "factory test failed",
            failed_at,
        ))
        .await
        .unwrap();
    assert!(response.device.is_none());
    assert_eq!(response.remaining_in_lease, 2, "no slot consumed");
    let failure = response.failure.expect("the failure record");
    assert_eq!(
        (failure.serial.clone(), failure.reason.as_str()),
        (reworked.to_vec(), "factory test failed")
    );
    assert_eq!(failure.order_id, f.order.order_id);
    assert_eq!(snapshot(&f).await, (7, 2, 1, 1));
    assert_eq!(failed_count(&f).await, 1);
    // Re-sent after an outage: a no-op.
    f.station
        .report_raw(failed_report(
            reworked.to_vec(),
            "factory test failed",
            failed_at,
        ))
        .await
        .unwrap();
    assert_eq!(failed_count(&f).await, 1);
    // Serial unknown: still recorded.
    f.station
        .report_raw(failed_report(
            vec![],
            "no answer to the handshake",
            now_ms(),
        ))
        .await
        .unwrap();
    assert_eq!(failed_count(&f).await, 2);
    assert_eq!(snapshot(&f).await, (7, 2, 1, 1));
    assert_eq!(
        f.tc.coordinator
            .provisioning()
            .registry
            .list_failures(&f.order.order_id)
            .await
            .unwrap()
            .len(),
        2
    );
    let mut op = f.tc.operator_client().await.unwrap();
    assert_refused(
        op.get_device(f.tc.operator_request(v1::GetDeviceRequest {
            product_id: 7,
            serial: reworked.to_vec(),
        }))
        .await,
        Code::NotFound,
        "no device",
    );
    // Refusals: no reason; a failed test reported as provisioned; the retired REJECTED.
    assert_refused(
        f.station
            .report_raw(failed_report(reworked.to_vec(), " ", now_ms()))
            .await,
        Code::InvalidArgument,
        "failure_reason",
    );
    assert_refused(
        f.station
            .report_raw(v1::ReportInstallRequest {
                outcome: v1::InstallOutcome::Provisioned as i32,
                failure_reason: String::new(),
                ..failed_report(random_serial().to_vec(), "", now_ms())
            })
            .await,
        Code::InvalidArgument,
        "FAILED",
    );
    assert_refused(
        f.station
            .report_raw(v1::ReportInstallRequest {
                outcome: 2,
                ..failed_report(random_serial().to_vec(), "x", now_ms())
            })
            .await,
        Code::InvalidArgument,
        "REJECTED is retired",
    );
    assert_eq!(snapshot(&f).await, (7, 2, 1, 1));
    assert_eq!(failed_count(&f).await, 2);

    // Registry queries.
    let mut op = f.tc.operator_client().await.unwrap();
    let by_serial = op
        .get_device(f.tc.operator_request(v1::GetDeviceRequest {
            product_id: 7,
            serial: serial.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (by_serial.station_id.clone(), by_serial.order_id.clone()),
        (f.station.id(), f.order.order_id.clone())
    );
    for filter in [
        v1::ListDevicesRequest {
            station_id: f.station.id(),
            ..Default::default()
        },
        v1::ListDevicesRequest {
            order_id: f.order.order_id.clone(),
            ..Default::default()
        },
        v1::ListDevicesRequest {
            from_ms: now_ms() - 60_000,
            to_ms: now_ms() + 60_000,
            ..Default::default()
        },
    ] {
        let n = op
            .list_devices(f.tc.operator_request(filter))
            .await
            .unwrap()
            .into_inner()
            .devices
            .len();
        assert_eq!(n, 1);
    }
    let none = op
        .list_devices(f.tc.operator_request(v1::ListDevicesRequest {
            from_ms: now_ms() + 60_000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.devices.is_empty());

    let before = snapshot(&f).await;

    // Duplicate serial.
    assert_refused(
        f.station.report(&lease.lease_id, serial, now_ms()).await,
        Code::AlreadyExists,
        "already registered",
    );
    assert_eq!(snapshot(&f).await, before);

    // Forged lease: signed by another key, the station's verifier refuses it …
    let forger = SigningKey::generate(&mut OsRng);
    let forged = flashgate_proto::lease::sign_lease(
        &v1::LeaseBody {
            lease_id: "lease-forged".into(),
            count: 1000,
            ..lease.clone()
        },
        &forger,
    );
    assert_eq!(
        verify_signed_lease(&forged, &coordinator_key),
        Err(LeaseError::BadSignature)
    );
    // … and a lease altered in transit fails too …
    let mut altered = signed.clone();
    altered.body = v1::LeaseBody {
        count: 1000,
        ..lease.clone()
    }
    .encode_to_vec();
    assert_eq!(
        verify_signed_lease(&altered, &coordinator_key),
        Err(LeaseError::BadSignature)
    );
    // … and the coordinator never heard of the forged lease id.
    assert_refused(
        f.station
            .report("lease-forged", random_serial(), now_ms())
            .await,
        Code::NotFound,
        "does not exist",
    );
    assert_eq!(snapshot(&f).await, before);

    // Unknown order.
    assert_refused(
        f.station.acquire("no-such-order", 1, 0).await,
        Code::NotFound,
        "does not exist",
    );
    assert_eq!(snapshot(&f).await, before);

    // More than the order has left.
    assert_refused(
        f.station.acquire(&f.order.order_id, 8, 0).await,
        Code::ResourceExhausted,
        "unreserved slots",
    );
    assert_eq!(snapshot(&f).await, before);

    // Another station's lease.
    let mut other = SimStation::to(&f.tc).await;
    other.enrol().await.unwrap();
    // Unapproved station.
    assert_refused(
        other.acquire(&f.order.order_id, 1, 0).await,
        Code::PermissionDenied,
        "not approved",
    );
    f.tc.approve(&other.id()).await.unwrap();
    assert_refused(
        other
            .report(&lease.lease_id, random_serial(), now_ms())
            .await,
        Code::PermissionDenied,
        "another station",
    );
    assert_refused(
        other
            .report_raw(v1::ReportInstallRequest {
                lease_id: lease.lease_id.clone(),
                outcome: v1::InstallOutcome::Failed as i32,
                failure_reason: "not mine".into(),
                installed_at_ms: now_ms(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "another station",
    );
    assert_refused(
        other.return_lease(&lease.lease_id).await,
        Code::PermissionDenied,
        "another station",
    );
    // … and it is not assigned to the order.
    assert_refused(
        other.acquire(&f.order.order_id, 1, 0).await,
        Code::PermissionDenied,
        "not assigned",
    );
    assert_eq!(snapshot(&f).await, before);

    // Malformed serial.
    let mut short = f.station.signer.sign(
        methods::REPORT_INSTALL,
        v1::ReportInstallRequest {
            lease_id: lease.lease_id.clone(),
            serial: vec![1; 15],
            installed_at_ms: now_ms(),
            ..Default::default()
        },
    );
    assert_refused(
        f.station.client.report_install(short).await,
        Code::InvalidArgument,
        "16-byte",
    );
    // Signature over another message: tampered body.
    short = f.station.signer.sign(
        methods::REPORT_INSTALL,
        v1::ReportInstallRequest {
            lease_id: lease.lease_id.clone(),
            serial: serial.to_vec(),
            ..Default::default()
        },
    );
    short.get_mut().serial = random_serial().to_vec();
    assert_refused(
        f.station.client.report_install(short).await,
        Code::Unauthenticated,
        "does not verify",
    );
    // Signature for another method.
    let wrong_method = f.station.signer.sign(
        methods::RETURN_LEASE,
        v1::AcquireLeaseRequest {
            order_id: f.order.order_id.clone(),
            count: 1,
            ..Default::default()
        },
    );
    assert_refused(
        f.station.client.acquire_lease(wrong_method).await,
        Code::Unauthenticated,
        "does not verify",
    );
    // Replay.
    let nonce = [9u8; 16];
    let msg = v1::ListAssignedOrdersRequest {};
    let first =
        f.station
            .signer
            .sign_with(methods::LIST_ASSIGNED_ORDERS, msg, now_ms() as u64, nonce);
    let replay =
        f.station
            .signer
            .sign_with(methods::LIST_ASSIGNED_ORDERS, msg, now_ms() as u64, nonce);
    assert_eq!(
        f.station
            .client
            .list_assigned_orders(first)
            .await
            .unwrap()
            .into_inner()
            .orders
            .len(),
        1
    );
    assert_refused(
        f.station.client.list_assigned_orders(replay).await,
        Code::Unauthenticated,
        "replayed",
    );
    // Stale timestamp.
    let stale = f.station.signer.sign_with(
        methods::LIST_ASSIGNED_ORDERS,
        msg,
        now_ms() as u64 - 600_000,
        [8; 16],
    );
    assert_refused(
        f.station.client.list_assigned_orders(stale).await,
        Code::Unauthenticated,
        "clock",
    );
    // Timestamps whose difference with the clock does not fit an i64: refused as off the
    // clock, checked before the signature, without overflowing (a panic would drop the call).
    for (far, nonce) in [
        (1u64 << 63, [10; 16]),
        (u64::MAX, [11; 16]),
        (i64::MAX as u64, [12; 16]),
    ] {
        let request = f
            .station
            .signer
            .sign_with(methods::LIST_ASSIGNED_ORDERS, msg, far, nonce);
        assert_refused(
            f.station.client.list_assigned_orders(request).await,
            Code::Unauthenticated,
            "clock",
        );
    }
    // Unsigned.
    assert_refused(
        f.station.client.list_assigned_orders(msg).await,
        Code::Unauthenticated,
        "signed",
    );
    // Oversized message.
    let huge = f.station.signer.sign(
        methods::REPORT_INSTALL,
        v1::ReportInstallRequest {
            lease_id: lease.lease_id.clone(),
            serial: serial.to_vec(),
            test_result: Some(v1::TestResult {
                outcome: 2,
                log: "x".repeat(200_000),
            }),
            ..Default::default()
        },
    );
    let status = f
        .station
        .client
        .report_install(huge)
        .await
        .expect_err("oversized");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(snapshot(&f).await, before);

    // A station cannot call operator methods: no token, and its signature is no token.
    let mut op_as_station = f.tc.operator_client().await.unwrap();
    let attempt = f.station.signer.sign(
        "/flashgate.v1.OperatorService/ApproveStation",
        v1::ApproveStationRequest {
            station_id: other.id(),
        },
    );
    assert_refused(
        op_as_station.approve_station(attempt).await,
        Code::Unauthenticated,
        "Bearer",
    );
    let wrong_token =
        flashgate_coordinator::testing::operator_request("guess", v1::ListOrdersRequest {});
    assert_refused(
        op_as_station.list_orders(wrong_token).await,
        Code::Unauthenticated,
        "token",
    );

    // Report beyond the lease count (the first one: the board that failed, after rework).
    f.station
        .report(&lease.lease_id, reworked, now_ms())
        .await
        .unwrap();
    f.station
        .report(&lease.lease_id, random_serial(), now_ms())
        .await
        .unwrap();
    let full = snapshot(&f).await;
    assert_eq!(full, (7, 0, 3, 3));
    assert_refused(
        f.station
            .report(&lease.lease_id, random_serial(), now_ms())
            .await,
        Code::ResourceExhausted,
        "covers 3",
    );
    assert_eq!(snapshot(&f).await, full);

    // Return: unused slots come back exactly once.
    let second = verify_signed_lease(
        &f.station.acquire(&f.order.order_id, 4, 0).await.unwrap(),
        &coordinator_key,
    )
    .unwrap();
    f.station
        .report(&second.lease_id, random_serial(), now_ms())
        .await
        .unwrap();
    assert_eq!(snapshot(&f).await, (3, 3, 4, 4));
    assert_eq!(
        f.station
            .return_lease(&second.lease_id)
            .await
            .unwrap()
            .released,
        3
    );
    assert_eq!(
        f.station
            .return_lease(&second.lease_id)
            .await
            .unwrap()
            .released,
        0
    );
    assert_eq!(snapshot(&f).await, (6, 0, 4, 4));
    assert_refused(
        f.station
            .report(&second.lease_id, random_serial(), now_ms())
            .await,
        Code::FailedPrecondition,
        "ended",
    );
    // A failure under the ended lease (re-sent after an outage) is still recorded, and gives
    // nothing back twice.
    let late = f
        .station
        .report_raw(v1::ReportInstallRequest {
            lease_id: second.lease_id.clone(),
            ..failed_report(random_serial().to_vec(), "target lost power", now_ms())
        })
        .await
        .unwrap();
    assert_eq!(late.remaining_in_lease, 0);
    assert_eq!(snapshot(&f).await, (6, 0, 4, 4));
    assert_eq!(failed_count(&f).await, 3);

    // Expiry: a 1-second lease; an install done before not-after may be reported within the
    // grace period; one done after is refused; the leader returns the rest exactly once.
    let short_lease = verify_signed_lease(
        &f.station.acquire(&f.order.order_id, 3, 1).await.unwrap(),
        &coordinator_key,
    )
    .unwrap();
    // The certificate is issued while the lease is valid; the report comes after.
    let certified_in_time = random_serial();
    f.station
        .certify(&short_lease.lease_id, certified_in_time)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.station
        .report_only(
            &short_lease.lease_id,
            certified_in_time,
            short_lease.not_after_ms,
        )
        .await
        .unwrap();
    assert_refused(
        f.station
            .report(&short_lease.lease_id, random_serial(), now_ms())
            .await,
        Code::FailedPrecondition,
        "expired",
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_refused(
        f.station
            .report(
                &short_lease.lease_id,
                random_serial(),
                short_lease.not_after_ms,
            )
            .await,
        Code::FailedPrecondition,
        "",
    );
    // The housekeeping loop (200 ms) has expired it by now.
    let mut settled = snapshot(&f).await;
    for _ in 0..50 {
        if settled.1 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        settled = snapshot(&f).await;
    }
    assert_eq!(settled, (5, 0, 5, 5));
    assert_eq!(
        f.station
            .return_lease(&short_lease.lease_id)
            .await
            .unwrap()
            .released,
        0
    );
    assert_eq!(snapshot(&f).await, (5, 0, 5, 5));

    // Releases: a bad vendor signature is refused.
    let impostor = SigningKey::generate(&mut OsRng);
    let bad = sign_image(ImageKind::Bootloader, 7, 2, 0, b"evil", &impostor);
    let releases_before = op
        .list_releases(f.tc.operator_request(v1::ListReleasesRequest { product_id: 7 }))
        .await
        .unwrap()
        .into_inner()
        .releases
        .len();
    assert_refused(
        op.upload_release(f.tc.operator_request(v1::UploadReleaseRequest { image: bad }))
            .await,
        Code::InvalidArgument,
        "signature",
    );
    let mut truncated = sign_image(ImageKind::Bootloader, 7, 2, 0, b"good body", &f.vendor);
    truncated.pop();
    assert_refused(
        op.upload_release(f.tc.operator_request(v1::UploadReleaseRequest { image: truncated }))
            .await,
        Code::InvalidArgument,
        "body",
    );
    assert_refused(
        op.upload_release(f.tc.operator_request(v1::UploadReleaseRequest { image: vec![0; 10] }))
            .await,
        Code::InvalidArgument,
        "not a flashgate signed image",
    );
    let releases_after = op
        .list_releases(f.tc.operator_request(v1::ListReleasesRequest { product_id: 7 }))
        .await
        .unwrap()
        .into_inner()
        .releases
        .len();
    assert_eq!(releases_before, releases_after);
    f.tc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_embedded_store() {
    let tc = TestCoordinator::start_embedded_with(config())
        .await
        .unwrap();
    happy_path_and_refusals(fixture(tc).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_etcd() {
    let etcd = EtcdProcess::start();
    let store = Arc::new(etcd.store("/api/").await);
    let tc = TestCoordinator::start(
        store,
        config(),
        SigningKey::generate(&mut OsRng),
        Kek::generate(),
    )
    .await
    .unwrap();
    happy_path_and_refusals(fixture(tc).await).await;
}
