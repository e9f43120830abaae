//! Issue 11's refusals at the coordinator, each with its own status and nothing changed: a
//! plain-text client of a TLS coordinator, a client trusting another CA, a station connection
//! without (or with another) identity certificate, expired and reused enrolment tokens, a
//! station fetching a release of an order not assigned to it or an OS image, and every role
//! calling outside its role. Then the audit log: `verify` passes on a real history and fails
//! when one entry is edited, one removed, or two swapped in the store itself.

use ed25519_dalek::SigningKey;
use flashgate_coordinator::access::Role;
use flashgate_coordinator::store::{Guard, Write};
use flashgate_coordinator::testing::{operator_request, TestCoordinator};
use flashgate_proto::sealed_release;
use flashgate_proto::station_auth::methods;
use flashgate_proto::transport::{endpoint, ClientTls, Security, TransportError};
use flashgate_proto::v1::{self, access_service_client::AccessServiceClient};
use flashgate_protocol::image::{sign_image, ImageKind};
use rand_core::OsRng;
use tonic::Code;

use crate::support::{channel, pinned_by, SimStation};

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} lacks {needle:?}",
        status.message()
    );
}

async fn stations(tc: &TestCoordinator) -> Vec<v1::Station> {
    let mut op = tc.operator_client().await.unwrap();
    op.list_stations(tc.operator_request(v1::ListStationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .stations
}

#[tokio::test]
async fn transport_refusals_plaintext_client_unknown_ca_and_connections_not_the_station() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    // A plain-text client of the TLS port: refused before anything is sent by our own client…
    let plain = tc.endpoint.replace("https://", "http://");
    let err = endpoint(&plain, &tc.security()).unwrap_err();
    assert!(matches!(err, TransportError::PlaintextRefused(_)), "{err}");
    assert!(err.to_string().contains("tls init"), "{err}");
    // …and by the server when a client insists: no HTTP/2 over plain text is answered.
    let forced = endpoint(&plain, &Security::InsecurePlaintext)
        .unwrap()
        .connect()
        .await;
    match forced {
        Err(_) => {}
        Ok(channel) => {
            let answer = v1::operator_service_client::OperatorServiceClient::new(channel)
                .list_products(tc.operator_request(v1::ListProductsRequest {}))
                .await;
            let status = answer.expect_err("a plain-text call to a TLS port fails");
            assert!(
                matches!(status.code(), Code::Unavailable | Code::Unknown),
                "a transport failure, never an answer: {status:?}"
            );
        }
    }
    // A client that trusts another CA does not get a connection.
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = crate::support::loopback_tls(other_dir.path());
    let wrong = endpoint(
        &tc.endpoint,
        &Security::Tls(ClientTls::new(other_ca.into_bytes())),
    )
    .unwrap()
    .connect()
    .await;
    assert!(wrong.is_err(), "a certificate of an unknown CA is refused");

    // Station calls over TLS without the station's identity certificate: UNAUTHENTICATED.
    let key = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::to(&tc).await;
    station.client = v1::station_service_client::StationServiceClient::new(
        channel(&tc.endpoint, &tc.ca_pem, None).await.unwrap(),
    );
    refused(station.enrol().await, Code::Unauthenticated, "mutual TLS");
    // …or with another key's certificate.
    station.client = v1::station_service_client::StationServiceClient::new(
        channel(&tc.endpoint, &tc.ca_pem, Some(&key)).await.unwrap(),
    );
    refused(
        station.enrol().await,
        Code::Unauthenticated,
        "not this station's key",
    );
    assert!(stations(&tc).await.is_empty(), "nothing was enrolled");
}

#[tokio::test]
async fn enrolment_tokens_approve_once_and_expire() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let mut access = tc.access_client().await.unwrap();
    let made = access
        .create_enrolment_token(tc.operator_request(v1::CreateEnrolmentTokenRequest {
            valid_seconds: 60,
            note: "line 3".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        made.lease_signing_public_key,
        tc.coordinator.lease_verifying_key().to_bytes().to_vec()
    );

    let mut first = SimStation::to(&tc).await;
    let mut request = first.enrol_request();
    request.enrolment_token = made.token.clone();
    let enrolled = first
        .client
        .enrol(first.signer.sign(methods::ENROL, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enrolled.state, v1::StationState::Approved as i32);

    // Reused by another station: refused, nothing written.
    let mut second = SimStation::to(&tc).await;
    let mut request = second.enrol_request();
    request.enrolment_token = made.token.clone();
    refused(
        second
            .client
            .enrol(second.signer.sign(methods::ENROL, request))
            .await,
        Code::PermissionDenied,
        "already used",
    );
    // Expired: refused, nothing written.
    let short = access
        .create_enrolment_token(tc.operator_request(v1::CreateEnrolmentTokenRequest {
            valid_seconds: 1,
            note: "short".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut request = second.enrol_request();
    request.enrolment_token = short.token;
    refused(
        second
            .client
            .enrol(second.signer.sign(methods::ENROL, request))
            .await,
        Code::PermissionDenied,
        "expired",
    );
    let known = stations(&tc).await;
    assert_eq!(known.len(), 1, "only the first station exists: {known:?}");
}

#[tokio::test]
async fn a_station_gets_only_its_orders_bootloader_sealed_to_it_never_an_os_image() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let vendor = SigningKey::generate(&mut OsRng);
    let mut mine = SimStation::to(&tc).await;
    let mut theirs = SimStation::to(&tc).await;
    for s in [&mut mine, &mut theirs] {
        s.enrol().await.unwrap();
        tc.approve(&s.id()).await.unwrap();
    }
    let order = tc
        .create_demo_order(5, &vendor, vec![mine.id()], 3)
        .await
        .unwrap();
    let mut op = tc.operator_client().await.unwrap();
    let os_body = pinned_by(&tc, 5, b"the vendor's os", &vendor).await;
    let os = sign_image(ImageKind::Os, 5, 1, 0, &os_body, &vendor);
    let os = op
        .upload_release(tc.operator_request(v1::UploadReleaseRequest { image: os }))
        .await
        .unwrap()
        .into_inner();
    let fetch = |s: &SimStation, digest: &[u8], order_id: &str| {
        s.signer.sign(
            methods::FETCH_RELEASE,
            v1::FetchReleaseRequest {
                digest: digest.to_vec(),
                order_id: order_id.to_owned(),
            },
        )
    };

    // Its own order's bootloader: sealed to it, bound to release, station and order.
    let got = mine
        .client
        .fetch_release(fetch(&mine, &order.bootloader_digest, &order.order_id))
        .await
        .unwrap()
        .into_inner();
    assert!(!got
        .sealed_image
        .windows(20)
        .any(|w| w == b"demo bootloader body"));
    let digest: [u8; 32] = order.bootloader_digest.clone().try_into().unwrap();
    let aad = sealed_release::aad(&digest, &mine.id(), &order.order_id);
    let image = sealed_release::open(&mine.x25519, &aad, &got.sealed_image).unwrap();
    assert!(image.windows(20).any(|w| w == b"demo bootloader body"));
    assert!(sealed_release::open(&theirs.x25519, &aad, &got.sealed_image).is_err());

    // Another station, the same order: not assigned to it.
    refused(
        theirs
            .client
            .fetch_release(fetch(&theirs, &order.bootloader_digest, &order.order_id))
            .await,
        Code::PermissionDenied,
        "not assigned",
    );
    // An OS image, even named with its own order: never.
    refused(
        mine.client
            .fetch_release(fetch(&mine, &os.digest, &order.order_id))
            .await,
        Code::PermissionDenied,
        "never go to stations",
    );
    // No order named: refused.
    refused(
        mine.client
            .fetch_release(fetch(&mine, &order.bootloader_digest, ""))
            .await,
        Code::InvalidArgument,
        "order_id",
    );
}

#[tokio::test]
async fn every_role_is_refused_outside_its_role_and_nothing_changes() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let vendor = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::to(&tc).await;
    station.enrol().await.unwrap();
    let order = tc
        .create_demo_order(9, &vendor, vec![station.id()], 10)
        .await
        .unwrap();
    let mut tokens = std::collections::HashMap::new();
    for role in Role::ALL {
        let token = tc.operator_with_role(role.name(), role).await.unwrap();
        tokens.insert(role, token);
    }
    let audit_before = tc.coordinator.audit().list("", 0).await.unwrap().len();
    let mut op = tc.operator_client().await.unwrap();
    let mut access = AccessServiceClient::new(tc.channel().await.unwrap());
    let as_role = |role: Role| tokens[&role].clone();
    let order_request = || v1::CreateOrderRequest {
        product_id: 9,
        bootloader_digest: order.bootloader_digest.clone(),
        station_ids: vec![station.id()],
        count: 5,
        ..Default::default()
    };
    let body = pinned_by(&tc, 9, b"another bootloader", &vendor).await;
    let image = sign_image(ImageKind::Bootloader, 9, 2, 0, &body, &vendor);

    for role in [Role::Viewer, Role::Release, Role::Field] {
        refused(
            op.create_order(operator_request(&as_role(role), order_request()))
                .await,
            Code::PermissionDenied,
            "needs the orders role",
        );
        refused(
            op.cancel_order(operator_request(
                &as_role(role),
                v1::CancelOrderRequest {
                    order_id: order.order_id.clone(),
                },
            ))
            .await,
            Code::PermissionDenied,
            "needs the orders role",
        );
    }
    for role in [Role::Viewer, Role::Orders, Role::Release] {
        refused(
            op.start_device_verification(operator_request(
                &as_role(role),
                v1::StartDeviceVerificationRequest {},
            ))
            .await,
            Code::PermissionDenied,
            "needs the field role",
        );
        refused(
            op.verify_device(operator_request(
                &as_role(role),
                v1::VerifyDeviceRequest {
                    verification_id: "ver-0".into(),
                    hello_response: vec![0; 84],
                },
            ))
            .await,
            Code::PermissionDenied,
            "needs the field role",
        );
    }
    for role in [Role::Viewer, Role::Orders, Role::Field] {
        refused(
            op.upload_release(operator_request(
                &as_role(role),
                v1::UploadReleaseRequest {
                    image: image.clone(),
                },
            ))
            .await,
            Code::PermissionDenied,
            "needs the release role",
        );
    }
    for role in [Role::Viewer, Role::Orders, Role::Release, Role::Field] {
        refused(
            op.approve_station(operator_request(
                &as_role(role),
                v1::ApproveStationRequest {
                    station_id: station.id(),
                },
            ))
            .await,
            Code::PermissionDenied,
            "needs the admin role",
        );
        refused(
            access
                .create_operator(operator_request(
                    &as_role(role),
                    v1::CreateOperatorRequest {
                        name: "sneaky".into(),
                        role: v1::OperatorRole::Admin as i32,
                    },
                ))
                .await,
            Code::PermissionDenied,
            "needs the admin role",
        );
        refused(
            op.create_product(operator_request(
                &as_role(role),
                v1::CreateProductRequest {
                    product_id: 10,
                    name: "x".into(),
                    vendor_public_key: vendor.verifying_key().to_bytes().to_vec(),
                },
            ))
            .await,
            Code::PermissionDenied,
            "needs the admin role",
        );
        // Every role reads.
        op.list_orders(operator_request(&as_role(role), v1::ListOrdersRequest {}))
            .await
            .unwrap();
    }
    // Nothing changed: no order, release, station approval, credential or audit entry.
    let orders = op
        .list_orders(tc.operator_request(v1::ListOrdersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(orders.len(), 1);
    assert_eq!(
        stations(&tc).await[0].state,
        v1::StationState::Pending as i32
    );
    let operators = access
        .list_operators(tc.operator_request(v1::ListOperatorsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .operators;
    assert_eq!(operators.len(), Role::ALL.len());
    assert_eq!(
        tc.coordinator.audit().list("", 0).await.unwrap().len(),
        audit_before
    );

    // Each role's own call works; a revoked credential stops at once.
    op.create_order(operator_request(&as_role(Role::Orders), order_request()))
        .await
        .unwrap();
    op.upload_release(operator_request(
        &as_role(Role::Release),
        v1::UploadReleaseRequest { image },
    ))
    .await
    .unwrap();
    access
        .revoke_operator(tc.operator_request(v1::RevokeOperatorRequest {
            name: "orders".into(),
        }))
        .await
        .unwrap();
    refused(
        op.create_order(operator_request(&as_role(Role::Orders), order_request()))
            .await,
        Code::Unauthenticated,
        "not valid",
    );
}

async fn verify(tc: &TestCoordinator) -> v1::VerifyAuditResponse {
    let mut access = tc.access_client().await.unwrap();
    access
        .verify_audit(tc.operator_request(v1::VerifyAuditRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn raw_put(tc: &TestCoordinator, key: &str, value: Vec<u8>) {
    let store = tc.coordinator.store();
    let current = store.get(key).await.unwrap().unwrap();
    assert!(store
        .commit(
            vec![Guard::Revision(key.to_owned(), current.revision)],
            vec![Write::Put(key.to_owned(), value)],
        )
        .await
        .unwrap());
}

/// A history with several chains: products, releases, an order, a station, leases, installs.
async fn history() -> (TestCoordinator, Vec<(String, Vec<u8>)>) {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let vendor = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::to(&tc).await;
    station.enrol().await.unwrap();
    tc.approve(&station.id()).await.unwrap();
    let order = tc
        .create_demo_order(3, &vendor, vec![station.id()], 10)
        .await
        .unwrap();
    let signed = station.acquire(&order.order_id, 2, 0).await.unwrap();
    let lease =
        flashgate_proto::lease::verify_signed_lease(&signed, &tc.coordinator.lease_verifying_key())
            .unwrap();
    station
        .report(
            &lease.lease_id,
            crate::support::random_serial(),
            crate::support::now_ms(),
        )
        .await
        .unwrap();
    tc.operator_with_role("viewer", Role::Viewer).await.unwrap();
    let entries = tc
        .coordinator
        .store()
        .list("audit/entries/global/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect();
    (tc, entries)
}

#[tokio::test]
async fn audit_verify_passes_on_a_real_history_and_finds_an_edit_a_removal_and_a_swap() {
    let (tc, global) = history().await;
    let report = verify(&tc).await;
    assert!(report.ok, "{:?}", report.problems);
    assert!(
        report.chains >= 3,
        "global, order and lease chains: {report:?}"
    );
    let mut access = tc.access_client().await.unwrap();
    let listed = access
        .list_audit_entries(tc.operator_request(v1::ListAuditEntriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    for action in [
        "product created",
        "release uploaded",
        "station approved",
        "order created",
        "lease granted",
        "install registered",
        "operator created",
    ] {
        assert!(
            listed.iter().any(|e| e.action == action),
            "no {action:?} in {:#?}",
            listed.iter().map(|e| &e.action).collect::<Vec<_>>()
        );
    }
    assert!(global.len() >= 4, "{global:?}");

    // Edited: one field of one entry.
    let (key, original) = global[1].clone();
    let mut edited: serde_json::Value = serde_json::from_slice(&original).unwrap();
    edited["actor"] = serde_json::json!("operator:someone-else");
    raw_put(&tc, &key, serde_json::to_vec(&edited).unwrap()).await;
    let report = verify(&tc).await;
    assert!(!report.ok);
    assert!(
        report.problems.iter().any(|p| p.contains("altered")),
        "{:?}",
        report.problems
    );
    raw_put(&tc, &key, original).await;
    assert!(verify(&tc).await.ok, "restored");

    // Removed: one entry in the middle.
    let (key, original) = global[1].clone();
    let store = tc.coordinator.store();
    assert!(store
        .commit(vec![], vec![Write::Delete(key.clone())])
        .await
        .unwrap());
    let report = verify(&tc).await;
    assert!(!report.ok);
    assert!(
        report.problems.iter().any(|p| p.contains("missing")),
        "{:?}",
        report.problems
    );
    assert!(store
        .commit(
            vec![Guard::Absent(key.clone())],
            vec![Write::Put(key, original)]
        )
        .await
        .unwrap());
    assert!(verify(&tc).await.ok, "restored");

    // Removed at the end: the head still names it.
    let (last_key, last) = global.last().cloned().unwrap();
    assert!(store
        .commit(vec![], vec![Write::Delete(last_key.clone())])
        .await
        .unwrap());
    assert!(
        !verify(&tc).await.ok,
        "a removed last entry is found by the head"
    );
    assert!(store
        .commit(vec![], vec![Write::Put(last_key, last)])
        .await
        .unwrap());

    // Swapped: two entries under each other's keys.
    let ((a_key, a), (b_key, b)) = (global[1].clone(), global[2].clone());
    raw_put(&tc, &a_key, b.clone()).await;
    raw_put(&tc, &b_key, a.clone()).await;
    let report = verify(&tc).await;
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("swapped") || p.contains("reordered")),
        "{:?}",
        report.problems
    );
}
