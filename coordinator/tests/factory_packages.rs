//! Orders with an OS (issue 18) over loopback gRPC: the order names a vendor-signed OS, the
//! station gets per-device packages (never the image), and a board is registered only with a
//! status receipt, verified under its device key, showing that OS running, confirmed.

use ed25519_dalek::SigningKey;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::station_auth::methods;
use flashgate_proto::v1;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::image::{sign_image, ImageKind};
use flashgate_protocol::layout::{IMAGE_HEADER_SPACE, OS_SLOT_ADDR};
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::update::package::Envelope;
use flashgate_protocol::update::receipt::{self, StatusReceipt};
use rand_core::OsRng;
use tonic::Code;

use crate::support::{now_ms, pinned_by, random_serial, SimStation};

const PRODUCT: u32 = 7;
const OS_VERSION: u32 = 2;

async fn os_image(tc: &TestCoordinator, vendor: &SigningKey, version: u32) -> Vec<u8> {
    let body: Vec<u8> = (0..9000u32).map(|i| (i * 31 + 7) as u8).collect();
    let body = pinned_by(tc, PRODUCT, &body, vendor).await;
    sign_image(
        ImageKind::Os,
        PRODUCT,
        version,
        OS_SLOT_ADDR + IMAGE_HEADER_SPACE,
        &body,
        vendor,
    )
}

fn receipt_of(serial: [u8; 16], state: DeviceState, phase: u8) -> StatusReceipt {
    StatusReceipt {
        serial,
        product_id: PRODUCT,
        bootloader_version: 1,
        state,
        outcome: Outcome::Updated,
        phase,
        attempts: 0,
        floor: OS_VERSION,
        new_version: OS_VERSION,
        last_error: 0,
    }
}

fn report(lease: &str, serial: [u8; 16], receipt: Vec<u8>) -> v1::ReportInstallRequest {
    v1::ReportInstallRequest {
        lease_id: lease.into(),
        serial: serial.to_vec(),
        bootloader_version: 1,
        outcome: v1::InstallOutcome::Provisioned as i32,
        installed_at_ms: now_ms(),
        os_status_receipt: receipt,
        ..Default::default()
    }
}

async fn package(
    station: &mut SimStation,
    lease: &str,
    serial: [u8; 16],
) -> Result<v1::UpdatePackage, tonic::Status> {
    let request = station.signer.sign(
        methods::GET_FACTORY_PACKAGE,
        v1::GetFactoryPackageRequest {
            lease_id: lease.into(),
            serial: serial.to_vec(),
        },
    );
    station
        .client
        .get_factory_package(request)
        .await
        .map(|r| r.into_inner())
}

async fn devices(tc: &TestCoordinator, order_id: &str) -> Vec<v1::Device> {
    let mut op = tc.operator_client().await.unwrap();
    op.list_devices(tc.operator_request(v1::ListDevicesRequest {
        order_id: order_id.into(),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
    .devices
}

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{status:?} lacks {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_of_an_order_with_an_os_is_registered_only_with_its_verified_receipt() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let vendor = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::connect(&tc.endpoint, &tc.ca_pem).await;
    station.enrol().await.unwrap();
    tc.approve(&station.id()).await.unwrap();
    // The product and its bootloader (an order without an OS), then the OS release.
    let plain = tc
        .create_demo_order(PRODUCT, &vendor, vec![station.id()], 5)
        .await
        .unwrap();
    let mut op = tc.operator_client().await.unwrap();
    let os = op
        .upload_release(tc.operator_request(v1::UploadReleaseRequest {
            image: os_image(&tc, &vendor, OS_VERSION).await,
        }))
        .await
        .unwrap()
        .into_inner();
    let order_request = |os_release_digest: Vec<u8>| v1::CreateOrderRequest {
        product_id: PRODUCT,
        bootloader_digest: plain.bootloader_digest.clone(),
        station_ids: vec![station.id()],
        count: 5,
        os_release_digest,
        ..Default::default()
    };
    // Only an OS release of the product is an order's OS.
    refused(
        op.create_order(tc.operator_request(order_request(plain.bootloader_digest.clone())))
            .await,
        Code::InvalidArgument,
        "is not an OS of product 7",
    );
    let order = op
        .create_order(tc.operator_request(order_request(os.digest.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (order.os_release_digest.clone(), order.os_version),
        (os.digest.clone(), OS_VERSION)
    );

    let signed = station.acquire(&order.order_id, 3, 0).await.unwrap();
    let lease = verify_signed_lease(&signed, &tc.coordinator.lease_verifying_key()).unwrap();
    assert_eq!(
        (lease.os_release_digest.clone(), lease.os_version),
        (os.digest.clone(), OS_VERSION)
    );
    // The station never gets the OS image itself.
    let fetch = station.signer.sign(
        methods::FETCH_RELEASE,
        v1::FetchReleaseRequest {
            digest: os.digest.clone(),
            order_id: order.order_id.clone(),
        },
    );
    refused(
        station.client.fetch_release(fetch).await,
        Code::PermissionDenied,
        "never go to stations",
    );

    // No package for a chip that was not certified under the lease (no device key exists).
    refused(
        package(&mut station, &lease.lease_id, random_serial()).await,
        Code::FailedPrecondition,
        "was not certified under lease",
    );
    // A package for one certified board: its envelope opens under that board's key only (the
    // one the coordinator drew at certification and sealed to the chip's loader).
    let serial = random_serial();
    let key = station
        .certified_key(&lease.lease_id, serial)
        .await
        .unwrap();
    let other_key = station
        .certified_key(&lease.lease_id, random_serial())
        .await
        .unwrap();
    let p = package(&mut station, &lease.lease_id, serial)
        .await
        .unwrap();
    assert_eq!(p.version, OS_VERSION);
    let envelope = Envelope::read_bytes(&p.envelope).unwrap();
    assert_eq!(envelope.serial, serial);
    assert!(envelope.open(&key).is_ok());
    assert!(envelope.open(&other_key).is_err());
    // Asked again (a retried board): a new envelope (nonce) and a new challenge.
    let again = package(&mut station, &lease.lease_id, serial)
        .await
        .unwrap();
    assert_ne!(again.envelope, p.envelope);
    assert_ne!(again.challenge, p.challenge);
    let challenge: [u8; 32] = again.challenge.as_slice().try_into().unwrap();
    let running = DeviceState::OsRunning {
        version: OS_VERSION,
    };
    let good = receipt::encode(&key, &challenge, &receipt_of(serial, running, 0)).to_vec();

    // Refused, nothing registered: no receipt; a receipt under another key; an answer to the
    // superseded challenge; another OS version; an install still on trial.
    let stale: [u8; 32] = p.challenge.as_slice().try_into().unwrap();
    let trial = 3; // update::boot_state::Phase::Trial
    let v1_running = DeviceState::OsRunning { version: 1 };
    for (receipt, code, needle) in [
        (
            Vec::new(),
            Code::FailedPrecondition,
            "must carry the device's status receipt",
        ),
        (
            receipt::encode(&[9; 32], &challenge, &receipt_of(serial, running, 0)).to_vec(),
            Code::PermissionDenied,
            "does not verify",
        ),
        (
            receipt::encode(&key, &stale, &receipt_of(serial, running, 0)).to_vec(),
            Code::PermissionDenied,
            "does not verify",
        ),
        (
            receipt::encode(&key, &challenge, &receipt_of(serial, v1_running, 0)).to_vec(),
            Code::FailedPrecondition,
            "shows OS version 1",
        ),
        (
            receipt::encode(&key, &challenge, &receipt_of(serial, running, trial)).to_vec(),
            Code::FailedPrecondition,
            "on trial",
        ),
    ] {
        refused(
            station
                .report_raw(report(&lease.lease_id, serial, receipt))
                .await,
            code,
            needle,
        );
    }
    // Certified (each certificate took its slot), none registered with an OS.
    let certified = devices(&tc, &order.order_id).await;
    assert_eq!(certified.len(), 2);
    assert!(certified
        .iter()
        .all(|d| d.os_version == 0 && d.installed_at_ms == 0));

    // The verified receipt registers the board with its OS; the challenge is used up.
    let registered = station
        .report_raw(report(&lease.lease_id, serial, good.clone()))
        .await
        .unwrap()
        .device
        .unwrap();
    assert_eq!(registered.os_version, OS_VERSION);
    let listed = devices(&tc, &order.order_id).await;
    let with_os: Vec<_> = listed.iter().filter(|d| d.os_version != 0).collect();
    assert_eq!(
        (
            with_os.len(),
            with_os[0].os_version,
            with_os[0].serial.clone()
        ),
        (1, OS_VERSION, serial.to_vec())
    );
    refused(
        package(&mut station, &lease.lease_id, serial).await,
        Code::AlreadyExists,
        "registered already",
    );

    // Another station cannot ask for packages under this lease; a lease of an order without an
    // OS gives none.
    let mut other = SimStation::connect(&tc.endpoint, &tc.ca_pem).await;
    other.enrol().await.unwrap();
    tc.approve(&other.id()).await.unwrap();
    assert!(package(&mut other, &lease.lease_id, random_serial())
        .await
        .is_err());
    let plain_lease = station.acquire(&plain.order_id, 1, 0).await.unwrap();
    let plain_lease =
        verify_signed_lease(&plain_lease, &tc.coordinator.lease_verifying_key()).unwrap();
    refused(
        package(&mut station, &plain_lease.lease_id, random_serial()).await,
        Code::FailedPrecondition,
        "installs no OS",
    );
}
