//! The down-link's queue (issue 16, item 3) on a real etcd with two coordinator replicas: only
//! the field role (or admin) may send and nothing is queued for a refused caller; messages sent
//! at once through both replicas get distinct counters (one key and nonce is never used twice),
//! each sealed for the device under its down key and audited; a sealed ack record ingested by
//! either replica moves its message to acked, a refusal report is counted on it.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use flashgate_coordinator::access::Role;
use flashgate_coordinator::ids::Serial;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::testing::{operator_request, test_config, TestCoordinator};
use flashgate_proto::v1::{self, device_message_service_client::DeviceMessageServiceClient};
use flashgate_protocol::data_stream::{open_down, DownKind, RecordKind, RecordSealer};
use rand_core::{OsRng, RngCore};
use tonic::Code;
use zeroize::Zeroizing;

use crate::support::{random_serial, EtcdProcess};

const PRODUCT: u32 = 7;

fn text(serial: &[u8; 16], text: &str) -> v1::SendDeviceMessageRequest {
    v1::SendDeviceMessageRequest {
        serial: serial.to_vec(),
        kind: v1::DownMessageKind::Text as i32,
        text: text.into(),
        interval_s: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_down_are_sent_by_the_field_role_counted_once_across_replicas_and_acked_by_the_device(
) {
    let etcd = EtcdProcess::start();
    let signing = SigningKey::generate(&mut OsRng);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = Arc::new(etcd.store("down").await);
        let kek = Kek::new(Zeroizing::new([0x11; 32]));
        replicas.push(
            TestCoordinator::start(store, test_config(), signing.clone(), kek)
                .await
                .unwrap(),
        );
    }
    let tc = &replicas[0];
    let serial = random_serial();
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    tc.register_device(PRODUCT, &serial, &key).await.unwrap();
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(DeviceMessageServiceClient::new(r.channel().await.unwrap()));
    }

    // Roles: viewer, orders and release may not send; nothing is queued for them (below).
    for role in [Role::Viewer, Role::Orders, Role::Release] {
        let token = tc.operator_with_role(role.name(), role).await.unwrap();
        let status = clients[0]
            .clone()
            .send_device_message(operator_request(&token, text(&serial, "no")))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("field"), "{status:?}");
    }

    let field = tc.operator_with_role("field", Role::Field).await.unwrap();
    // A record interval out of 1..=3600 s is refused by the coordinator too (the CLI checks it
    // first; another client may not). Neither refusal queued anything:
    for seconds in [0, 3601] {
        let status = clients[0]
            .clone()
            .send_device_message(operator_request(
                &field,
                v1::SendDeviceMessageRequest {
                    serial: serial.to_vec(),
                    kind: v1::DownMessageKind::RecordInterval as i32,
                    text: String::new(),
                    interval_s: seconds,
                },
            ))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("1 to 3600"), "{status:?}");
    }
    assert!(tc
        .data
        .down()
        .list(Serial(serial))
        .await
        .unwrap()
        .is_empty());

    // Ten at once, five through each replica, with the field role.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..10 {
        let mut client = clients[i % 2].clone();
        let request = operator_request(&field, text(&serial, &format!("message {i}")));
        sends.spawn(async move { client.send_device_message(request).await });
    }
    let mut counters: Vec<u32> = sends
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("the field role may send").into_inner().counter)
        .collect();
    counters.sort_unstable();
    assert_eq!(
        counters,
        (0..10).collect::<Vec<_>>(),
        "one counter per message"
    );

    // Each one is sealed for this device under its down key, under its own counter.
    let queued = replicas[1].data.down().list(Serial(serial)).await.unwrap();
    assert_eq!(queued.len(), 10);
    for (i, m) in queued.iter().enumerate() {
        let mut sealed = m.record.sealed.clone();
        let opened = open_down(&key, &mut sealed).expect("opens under the device key");
        assert_eq!(opened.header.counter, i as u32);
        assert_eq!(opened.kind, DownKind::Text);
        assert!(std::str::from_utf8(&sealed[opened.body])
            .unwrap()
            .starts_with("message "));
        assert_eq!(m.record.sent_by, "operator:field");
        let mut other = m.record.sealed.clone();
        assert!(open_down(&[0; 32], &mut other).is_err());
    }
    let audited = tc
        .coordinator
        .audit()
        .list("", 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "device message queued")
        .count();
    assert_eq!(audited, 10, "every send is in the audit trail");

    // The device's sealed reports, ingested by the other replica: an ack, then a replay of
    // the same message refused (counted, it stays acked), and a refusal of another one.
    let mut sealer = RecordSealer::new(&key, &serial, 0, 0, 64);
    let mut record = |body: &str| {
        let mut out = [0u8; 128];
        let n = sealer
            .seal(RecordKind::Telemetry, body.as_bytes(), &mut out)
            .unwrap();
        out[..n].to_vec()
    };
    let records = vec![
        record("down-ack 0:3 text"),
        record("down-refused 0:3 0x0502 refused=1"),
        record("down-refused 0:4 0x0501 refused=2"),
    ];
    let verdicts = replicas[1].data.ingest(&records, "test").await.unwrap();
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
    let list = clients[0]
        .clone()
        .list_device_messages(operator_request(
            &field,
            v1::ListDeviceMessagesRequest {
                serial: serial.to_vec(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    let state = |c: usize| v1::DeliveryState::try_from(list[c].state).unwrap();
    assert_eq!(state(3), v1::DeliveryState::Acked);
    assert_eq!(list[3].device_refusals, 1);
    assert_eq!(list[3].last_refusal, "0x0502");
    assert!(list[3].acked_at_ms > 0);
    assert_eq!(state(4), v1::DeliveryState::Refused);
    assert_eq!(state(5), v1::DeliveryState::Queued);
    drop(etcd);
}
