//! The device gateway on a real TCP port, with a test client in the device's place: it issues
//! nothing to a hello that does not prove the device key, and goes on once one does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flashgate_coordinator::device_gateway::GatewayOptions;
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1::{self, update_service_client::UpdateServiceClient};
use flashgate_protocol::codec::Codec;
use flashgate_protocol::hello::{self, DeviceState, HelloInfo};
use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::{DeviceMessage, FrameDecoder, MsgType, Request};
use flashgate_protocol::ErrorCode;
use rand_core::{OsRng, RngCore};

use crate::support::{product_with_os, random_serial};

const PRODUCT: u32 = 7;

/// The device's end of the connection: the gateway's requests, decoded.
struct FakeDevice {
    stream: TcpStream,
    decoder: Box<FrameDecoder>,
}

impl FakeDevice {
    /// The next request from the gateway, as (type, body).
    fn next_request(&mut self) -> (MsgType, Vec<u8>) {
        let mut byte = [0u8; 1];
        loop {
            self.stream.read_exact(&mut byte).unwrap();
            if let Some(Ok(frame)) = self.decoder.push(byte[0]) {
                return (frame.msg_type().unwrap(), frame.body().to_vec());
            }
        }
    }

    /// Answers the gateway's next hello with a proof under `key`.
    fn answer_hello(&mut self, key: &[u8; 32], info: &HelloInfo) {
        let (msg_type, body) = self.next_request();
        assert_eq!(msg_type, MsgType::HelloRequest);
        let Request::Hello { challenge } = Request::read_bytes(&body).unwrap() else {
            panic!("a hello request")
        };
        let mut raw = [0u8; hello::RESPONSE_LEN];
        hello::encode_response(key, &challenge, info, &mut raw).unwrap();
        let frame = frame_to_vec(&DeviceMessage::HelloResponse(&raw)).unwrap();
        self.stream.write_all(&frame).unwrap();
    }
}

async fn device_state(tc: &TestCoordinator, serial: &[u8; 16]) -> String {
    UpdateServiceClient::new(tc.channel().await.unwrap())
        .get_device_status(tc.operator_request(v1::GetDeviceStatusRequest {
            product_id: PRODUCT,
            serial: serial.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner()
        .state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_without_the_device_key_gets_nothing() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let (_, digest) = product_with_os(&tc, PRODUCT, "gateway test", 2, 9000).await;
    let (serial, mut key) = (random_serial(), [0u8; 32]);
    OsRng.fill_bytes(&mut key);
    tc.register_device(PRODUCT, &serial, &key).await.unwrap();
    UpdateServiceClient::new(tc.channel().await.unwrap())
        .publish_update(tc.operator_request(v1::PublishUpdateRequest {
            release_digest: digest,
            serials: vec![serial.to_vec()],
            ..Default::default()
        }))
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = GatewayOptions {
        hello_every: Duration::from_millis(300),
        ..GatewayOptions::default()
    };
    tokio::spawn(
        tc.coordinator
            .device_gateway(options)
            .serve(listener, std::future::pending()),
    );
    let info = HelloInfo {
        serial,
        chip_uid: serial,
        product_id: PRODUCT,
        bootloader_version: 3,
        state: DeviceState::NoValidImage {
            reason: ErrorCode::NoValidImage,
        },
    };
    let stream = tokio::task::spawn_blocking(move || TcpStream::connect(addr).unwrap())
        .await
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut device = FakeDevice {
        stream,
        decoder: Box::new(FrameDecoder::new()),
    };

    // A claim of the serial under another key: ignored, the gateway says hello again.
    let mut forged = [0u8; 32];
    OsRng.fill_bytes(&mut forged);
    let mut device = tokio::task::spawn_blocking(move || {
        device.answer_hello(&forged, &info);
        device.answer_hello(&forged, &info);
        device
    })
    .await
    .unwrap();
    assert_eq!(
        device_state(&tc, &serial).await,
        "pending",
        "nothing issued"
    );

    // Positive control: the device's own key gets its package (`begin` comes next).
    let (msg_type, body) = tokio::task::spawn_blocking(move || {
        device.answer_hello(&key, &info);
        loop {
            let (msg_type, body) = device.next_request();
            // Hellos sent before the answer arrived may still be in flight.
            if msg_type != MsgType::HelloRequest {
                return (msg_type, body);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(msg_type, MsgType::UpdateBegin);
    assert!(body.len() > 200, "an envelope");
    assert_eq!(device_state(&tc, &serial).await, "issued");
}
