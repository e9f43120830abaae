//! A stored record the coordinator cannot read is refused as DATA_LOSS naming its key, on
//! every path that reads it — never answered with empty bytes or default values. Each case
//! writes one field of a real record (made through the API) back as something that does not
//! decode (not hex, wrong length, an unknown state), calls the API, and restores the record.

use std::fmt::Debug;

use ed25519_dalek::SigningKey;
use flashgate_coordinator::store::Write;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_coordinator::CoordinatorError;
use flashgate_proto::lease::verify_signed_lease;
use flashgate_proto::station_auth::methods;
use flashgate_proto::v1::{self, update_service_client::UpdateServiceClient};
use flashgate_protocol::data_stream::{self, epoch_key, seal, Direction, RecordHeader, RecordKind};
use flashgate_protocol::image::{sign_image, ImageKind};
use rand_core::OsRng;
use serde_json::{json, Value};
use tonic::{Code, Status};

use crate::support::{now_ms, random_serial, SimStation};

const DATA_SERIAL: [u8; 16] = [0x42; 16];
const DATA_KEY: [u8; 32] = [7; 32];

struct World {
    tc: TestCoordinator,
    station: SimStation,
    order: v1::Order,
    lease_id: String,
    serial: [u8; 16],
}

/// A product, a bootloader and an OS release, an order, an approved station with a lease, a
/// reported device and a failure, a published update, a data record.
async fn world() -> World {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let vendor = SigningKey::generate(&mut OsRng);
    let mut station = SimStation::to(&tc).await;
    station.enrol().await.unwrap();
    tc.approve(&station.id()).await.unwrap();
    let order = tc
        .create_demo_order(7, &vendor, vec![station.id()], 10)
        .await
        .unwrap();
    let signed = station.acquire(&order.order_id, 3, 0).await.unwrap();
    let lease_id = verify_signed_lease(&signed, &tc.coordinator.lease_verifying_key())
        .unwrap()
        .lease_id;
    let serial = random_serial();
    station.report(&lease_id, serial, now_ms()).await.unwrap();
    station
        .report_raw(v1::ReportInstallRequest {
            lease_id: lease_id.clone(),
            serial: random_serial().to_vec(),
            outcome: v1::InstallOutcome::Failed as i32,
            failure_reason: "test failed".into(),
            installed_at_ms: now_ms(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut op = tc.operator_client().await.unwrap();
    let product = op
        .list_products(tc.operator_request(v1::ListProductsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .find(|p| p.product_id == 7)
        .unwrap();
    let os = sign_image(
        ImageKind::Os,
        7,
        2,
        0x1000,
        &crate::support::pinned(b"os body", &vendor, &product),
        &vendor,
    );
    let os = op
        .upload_release(tc.operator_request(v1::UploadReleaseRequest { image: os }))
        .await
        .unwrap()
        .into_inner();
    let mut updates = UpdateServiceClient::new(tc.channel().await.unwrap());
    updates
        .publish_update(tc.operator_request(v1::PublishUpdateRequest {
            release_digest: os.digest,
            serials: vec![serial.to_vec()],
            ..Default::default()
        }))
        .await
        .unwrap();

    tc.register_device(7, &DATA_SERIAL, &DATA_KEY)
        .await
        .unwrap();
    assert_eq!(
        tc.data.ingest(&[telemetry(1)], "test").await.unwrap(),
        [Ok(())]
    );
    World {
        tc,
        station,
        order,
        lease_id,
        serial,
    }
}

fn telemetry(counter: u32) -> Vec<u8> {
    let header = RecordHeader {
        device_id: data_stream::device_id(&DATA_SERIAL),
        epoch: 0,
        counter,
    };
    let mut out = vec![0u8; data_stream::MAX_RECORD_LEN];
    let n = seal(
        &epoch_key(&DATA_KEY, Direction::Up, 0),
        &header,
        RecordKind::Telemetry,
        b"t",
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out
}

impl World {
    async fn first_key(&self, prefix: &str) -> String {
        let all = self.tc.coordinator.store().list(prefix).await.unwrap();
        all.first()
            .unwrap_or_else(|| panic!("no record under {prefix}"))
            .0
            .clone()
    }

    /// Sets `field` of the first record under `prefix` to `value`; the key and the original.
    async fn corrupt(&self, prefix: &str, field: &str, value: Value) -> (String, Vec<u8>) {
        let key = self.first_key(prefix).await;
        let store = self.tc.coordinator.store();
        let original = store.get(&key).await.unwrap().unwrap().value;
        let mut record: Value = serde_json::from_slice(&original).unwrap();
        assert!(record.get(field).is_some(), "{key} has no field {field}");
        record[field] = value;
        put(self, &key, serde_json::to_vec(&record).unwrap()).await;
        (key, original)
    }

    async fn restore(&self, (key, original): (String, Vec<u8>)) {
        put(self, &key, original).await;
    }

    async fn order_status(&self) -> Result<v1::OrderStatus, Status> {
        let mut op = self.tc.operator_client().await.unwrap();
        op.get_order_status(self.tc.operator_request(v1::GetOrderStatusRequest {
            order_id: self.order.order_id.clone(),
        }))
        .await
        .map(tonic::Response::into_inner)
    }

    fn signed<T: prost::Message>(&self, method: &str, message: T) -> tonic::Request<T> {
        self.station.signer.sign(method, message)
    }

    async fn assigned_orders(&self) -> Result<v1::ListAssignedOrdersResponse, Status> {
        let request = self.signed(
            methods::LIST_ASSIGNED_ORDERS,
            v1::ListAssignedOrdersRequest {},
        );
        self.station
            .client
            .clone()
            .list_assigned_orders(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

async fn put(w: &World, key: &str, value: Vec<u8>) {
    assert!(w
        .tc
        .coordinator
        .store()
        .commit(vec![], vec![Write::Put(key.into(), value)])
        .await
        .unwrap());
}

fn assert_corrupt<T: Debug>(result: Result<T, Status>, key: &str) {
    let status = result.expect_err("a corrupt record must fail the call");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(
        status.message().contains(key) && status.message().contains("corrupt"),
        "{:?} does not name {key}",
        status.message()
    );
}

fn assert_corrupt_error<T: Debug>(result: Result<T, CoordinatorError>, key: &str) {
    match result {
        Err(CoordinatorError::CorruptRecord { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected CorruptRecord {{ key: {key} }}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_records() {
    let mut w = world().await;
    let tc = &w.tc;
    let mut op = tc.operator_client().await.unwrap();

    // Products are immutable, so a replica keeps the ones it has granted leases of as it read
    // them (`provisioning::grants`); a product it has not read yet — product 3, the first key —
    // is read on the grant path, and refused there if corrupt.
    let vendor = SigningKey::generate(&mut OsRng);
    let other = tc
        .create_demo_order(3, &vendor, vec![w.station.id()], 10)
        .await
        .unwrap();
    let bad = w
        .corrupt("products/", "vendor_public_key", json!("not hex"))
        .await;
    assert!(bad.0.ends_with("0000000003"), "{}", bad.0);
    assert_corrupt(
        op.list_products(tc.operator_request(v1::ListProductsRequest {}))
            .await,
        &bad.0,
    );
    let acquire = w.station.acquire(&other.order_id, 1, 0).await;
    assert_corrupt(acquire, &bad.0);
    w.restore(bad).await;
    w.station.acquire(&other.order_id, 1, 0).await.unwrap();

    let bad = w.corrupt("releases/", "body_digest", json!("abcd")).await;
    assert_corrupt(
        op.list_releases(tc.operator_request(v1::ListReleasesRequest { product_id: 0 }))
            .await,
        &bad.0,
    );
    let digest = hex::decode(bad.0.trim_start_matches("releases/")).unwrap();
    let fetch = w.signed(
        methods::FETCH_RELEASE,
        v1::FetchReleaseRequest {
            digest,
            order_id: w.order.order_id.clone(),
        },
    );
    assert_corrupt(w.station.client.fetch_release(fetch).await, &bad.0);
    w.restore(bad).await;

    let order_key = format!("orders/{}", w.order.order_id);
    let bad = w
        .corrupt(&order_key, "bootloader_digest", json!("zz"))
        .await;
    assert_corrupt(
        op.list_orders(tc.operator_request(v1::ListOrdersRequest {}))
            .await,
        &bad.0,
    );
    assert_corrupt(w.order_status().await, &bad.0);
    assert_corrupt(w.assigned_orders().await, &bad.0);
    w.restore(bad).await;

    // Everything restored: the same calls work again.
    op.list_orders(tc.operator_request(v1::ListOrdersRequest {}))
        .await
        .unwrap();
    w.station.acquire(&w.order.order_id, 1, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_records() {
    let mut w = world().await;
    let tc = &w.tc;
    let mut op = tc.operator_client().await.unwrap();

    let bad = w.corrupt("quota/", "remaining", json!("many")).await;
    assert_corrupt(w.order_status().await, &bad.0);
    w.restore(bad).await;

    let bad = w
        .corrupt("stations/", "x25519_public_key", json!("0102"))
        .await;
    assert_corrupt(
        op.list_stations(tc.operator_request(v1::ListStationsRequest { state: 0 }))
            .await,
        &bad.0,
    );
    assert_corrupt(w.assigned_orders().await, &bad.0);
    w.restore(bad).await;

    let bad = w
        .corrupt("leases/", "authority_public_key", json!("not hex"))
        .await;
    assert_corrupt(
        op.list_leases(tc.operator_request(v1::ListLeasesRequest::default()))
            .await,
        &bad.0,
    );
    assert_corrupt(w.order_status().await, &bad.0);
    let report = w
        .station
        .report(&w.lease_id, random_serial(), now_ms())
        .await;
    assert_corrupt(report, &bad.0);
    assert_corrupt(w.station.return_lease(&w.lease_id).await, &bad.0);
    assert_corrupt_error(tc.coordinator.housekeeping().sweep().await, &bad.0);
    w.restore(bad).await;

    let devices = format!("devices/{:010}/{}", 7, hex::encode(w.serial));
    for (field, value) in [("serial", json!("zz")), ("test_outcome", json!(99))] {
        let bad = w.corrupt(&devices, field, value).await;
        assert_corrupt(
            op.list_devices(tc.operator_request(v1::ListDevicesRequest::default()))
                .await,
            &bad.0,
        );
        assert_corrupt(
            op.get_device(tc.operator_request(v1::GetDeviceRequest {
                product_id: 7,
                serial: w.serial.to_vec(),
            }))
            .await,
            &bad.0,
        );
        w.restore(bad).await;
    }

    let bad = w.corrupt("failures/", "serial", json!("123")).await;
    assert_corrupt_error(
        tc.coordinator
            .provisioning()
            .registry
            .list_failures(&w.order.order_id)
            .await,
        &bad.0,
    );
    w.restore(bad).await;

    // The replay cache: a timestamp that is not a number.
    let key = w.first_key("nonces/").await;
    put(&w, &key, b"\"yesterday\"".to_vec()).await;
    assert_corrupt_error(tc.coordinator.housekeeping().sweep().await, &key);
    put(&w, &key, now_ms().to_string().into_bytes()).await;

    // Everything restored: the same calls work again.
    w.order_status().await.unwrap();
    w.station
        .report(&w.lease_id, random_serial(), now_ms())
        .await
        .unwrap();
    tc.coordinator.housekeeping().sweep().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_data_records() {
    let w = world().await;
    let tc = &w.tc;
    let mut updates = UpdateServiceClient::new(tc.channel().await.unwrap());
    let device_updates = format!("device_updates/{:010}/{}", 7, hex::encode(w.serial));

    for (field, value) in [("challenge", json!("xyz")), ("state", json!("exploded"))] {
        let bad = w.corrupt(&device_updates, field, value).await;
        assert_corrupt(
            updates
                .get_update_status(tc.operator_request(v1::GetUpdateStatusRequest {
                    product_id: 7,
                    ..Default::default()
                }))
                .await,
            &bad.0,
        );
        assert_corrupt(
            updates
                .get_device_status(tc.operator_request(v1::GetDeviceStatusRequest {
                    product_id: 7,
                    serial: w.serial.to_vec(),
                }))
                .await,
            &bad.0,
        );
        assert_corrupt(
            updates
                .report_update(tc.operator_request(v1::ReportUpdateRequest {
                    product_id: 7,
                    serial: w.serial.to_vec(),
                    receipt: vec![0; 80],
                    ..Default::default()
                }))
                .await,
            &bad.0,
        );
        w.restore(bad).await;
    }

    let bad = w
        .corrupt("update_campaigns/", "sealed_content_key", json!("q"))
        .await;
    assert_corrupt(
        updates
            .get_update_package(tc.operator_request(v1::GetUpdatePackageRequest {
                product_id: 7,
                serial: w.serial.to_vec(),
            }))
            .await,
        &bad.0,
    );
    w.restore(bad).await;
    updates
        .get_update_package(tc.operator_request(v1::GetUpdatePackageRequest {
            product_id: 7,
            serial: w.serial.to_vec(),
        }))
        .await
        .unwrap();

    let mut data = tc.coordinator_data_client().await;
    let query = || {
        tc.operator_request(v1::QueryRecordsRequest {
            serial: DATA_SERIAL.to_vec(),
            ..Default::default()
        })
    };
    let bad = w.corrupt("data/records/", "body_hex", json!("0g")).await;
    assert_corrupt(data.query_records(query()).await, &bad.0);
    w.restore(bad).await;
    assert_eq!(
        data.query_records(query())
            .await
            .unwrap()
            .into_inner()
            .records
            .len(),
        1
    );

    let bad = w
        .corrupt("data/windows/", "product_id", json!("seven"))
        .await;
    assert_corrupt_error(tc.data.ingest(&[telemetry(2)], "test").await, &bad.0);
    w.restore(bad).await;

    // A corrupt registry entry fails the records of its device (a fresh ingest, whose key
    // cache is empty, reads it through the device-id index; no registry scan).
    let devices = format!("devices/{:010}/{}", 7, hex::encode(DATA_SERIAL));
    let bad = w.corrupt(&devices, "product_id", json!("seven")).await;
    let fresh = tc.coordinator.data_ingest();
    assert_corrupt_error(fresh.ingest(&[telemetry(3)], "test").await, &bad.0);
    w.restore(bad).await;
    assert_eq!(
        tc.data.ingest(&[telemetry(4)], "test").await.unwrap(),
        [Ok(())]
    );
}
