//! Bad input at the coordinator's doors that no other test sends: bytes that are not protobuf,
//! fields of the wrong wire type, malformed auth metadata (operator and station), and garbage
//! UDP datagrams. Each gets its own status (or refusal count) and leaves the store as it was.
//! `docs/robustness.md` lists these beside the rest of the bad-input matrix.

use std::time::Duration;

use bytes::{Buf, BufMut};
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue};
use tonic::{Code, Status};

/// Sends request bodies as given and returns response bodies as received: the only way to put
/// bytes on the wire that no generated client would encode.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn raw_call(
    tc: &TestCoordinator,
    method: &'static str,
    body: Vec<u8>,
    with_token: bool,
) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Channel::from_shared(tc.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = if with_token {
        tc.operator_request(body)
    } else {
        tonic::Request::new(body)
    };
    grpc.unary(request, PathAndQuery::from_static(method), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

async fn product_count(tc: &TestCoordinator) -> usize {
    let mut op = tc.operator_client().await.unwrap();
    op.list_products(tc.operator_request(v1::ListProductsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .products
        .len()
}

const CREATE_PRODUCT: &str = "/flashgate.v1.OperatorService/CreateProduct";

/// Sends each body to `CreateProduct`: each must fail to decode, and no product appear.
async fn assert_undecodable(bodies: &[&[u8]]) {
    let tc = TestCoordinator::start_embedded()
        .await
        .expect("a coordinator starts");
    let before = product_count(&tc).await;
    for body in bodies {
        let status = raw_call(&tc, CREATE_PRODUCT, body.to_vec(), true)
            .await
            .expect_err("not a CreateProductRequest");
        assert_eq!(status.code(), Code::Internal, "{body:02x?}: {status:?}");
        assert!(
            status.message().contains("decode"),
            "{body:02x?}: {status:?}"
        );
    }
    assert_eq!(product_count(&tc).await, before);
    tc.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_protobuf_are_refused_and_change_nothing() {
    // A truncated varint, then a field number 0 (never valid), then a length past the end.
    assert_undecodable(&[&[0x08, 0xFF], &[0x00, 0x01], &[0x1A, 0x7F, 0x01]]).await;
}

#[tokio::test]
async fn a_field_of_the_wrong_wire_type_is_refused_and_changes_nothing() {
    // product_id (field 1, a varint) sent length-delimited; name (field 2, a string) sent as a
    // varint, then as invalid UTF-8.
    assert_undecodable(&[
        &[0x0A, 0x02, b'a', b'b'],
        &[0x10, 0x05],
        &[0x08, 0x07, 0x12, 0x02, 0xC3, 0x28],
    ])
    .await;
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let status = raw_call(
        &tc,
        "/flashgate.v1.OperatorService/DropAll",
        Vec::new(),
        true,
    )
    .await
    .expect_err("no such method");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    tc.stop().await;
}

#[tokio::test]
async fn malformed_operator_credentials_are_refused_and_change_nothing() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let before = product_count(&tc).await;
    let mut op = tc.operator_client().await.unwrap();
    let create = || v1::CreateProductRequest {
        product_id: 4242,
        name: "never".into(),
        vendor_public_key: vec![1; 32],
    };
    let token = tc.operator_token.clone();
    let cases: Vec<(&str, Option<String>, Code)> = vec![
        ("no authorization header", None, Code::Unauthenticated),
        (
            "another scheme",
            Some(format!("Basic {token}")),
            Code::Unauthenticated,
        ),
        (
            "the scheme in lower case",
            Some(format!("bearer {token}")),
            Code::Unauthenticated,
        ),
        (
            "no space after the scheme",
            Some(format!("Bearer{token}")),
            Code::Unauthenticated,
        ),
        (
            "a wrong token",
            Some("Bearer guess".into()),
            Code::PermissionDenied,
        ),
        (
            "the token with a suffix",
            Some(format!("Bearer {token}x")),
            Code::PermissionDenied,
        ),
    ];
    for (what, value, code) in cases {
        let mut request = tonic::Request::new(create());
        if let Some(value) = value {
            let value: AsciiMetadataValue = value.parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        let status = op.create_product(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            !status.message().contains(&token),
            "{what}: the token echoed"
        );
    }
    // A binary header of the same name is not the ASCII one the coordinator reads.
    let mut request = tonic::Request::new(create());
    request.metadata_mut().insert_bin(
        "authorization-bin",
        BinaryMetadataValue::from_bytes(format!("Bearer {token}").as_bytes()),
    );
    let status = op.create_product(request).await.expect_err("binary header");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(product_count(&tc).await, before);
    tc.stop().await;
}

#[tokio::test]
async fn malformed_station_headers_are_refused_with_what_is_wrong() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let mut station = tc.station_client().await.unwrap();
    let good = [
        ("x-flashgate-station", "st-0123456789abcdef".to_string()),
        ("x-flashgate-timestamp", "1700000000000".to_string()),
        ("x-flashgate-nonce", "00".repeat(16)),
        ("x-flashgate-signature", "11".repeat(64)),
    ];
    let cases: [(&str, &str, &str); 6] = [
        ("x-flashgate-timestamp", "yesterday", "unix milliseconds"),
        ("x-flashgate-timestamp", "-5", "unix milliseconds"),
        ("x-flashgate-nonce", "zz", "hex bytes"),
        ("x-flashgate-nonce", "0011", "hex bytes"),
        ("x-flashgate-signature", "11", "hex bytes"),
        ("x-flashgate-station", "", "enrol"),
    ];
    for (header, value, needle) in cases {
        let mut request = tonic::Request::new(v1::ListAssignedOrdersRequest {});
        for (name, good_value) in &good {
            let v = if *name == header {
                value
            } else {
                good_value.as_str()
            };
            request
                .metadata_mut()
                .insert(*name, v.parse::<AsciiMetadataValue>().unwrap());
        }
        let status = station
            .list_assigned_orders(request)
            .await
            .expect_err(header);
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{header}={value}: {status:?}"
        );
        assert!(
            status.message().contains(needle),
            "{header}={value}: {status:?}"
        );
    }
    // Each header missing in turn.
    for missing in good.each_ref().map(|(name, _)| *name) {
        let mut request = tonic::Request::new(v1::ListAssignedOrdersRequest {});
        for (name, value) in good.iter().filter(|(n, _)| *n != missing) {
            request
                .metadata_mut()
                .insert(*name, value.parse::<AsciiMetadataValue>().unwrap());
        }
        let status = station
            .list_assigned_orders(request)
            .await
            .expect_err(missing);
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{missing}: {status:?}"
        );
        assert!(status.message().contains(missing), "{missing}: {status:?}");
    }
    tc.stop().await;
}

async fn rejected(tc: &TestCoordinator) -> u64 {
    let mut data = tc.coordinator_data_client().await;
    let stats = data
        .get_ingest_stats(tc.operator_request(v1::GetIngestStatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.accepted, 0, "garbage was accepted: {stats:?}");
    stats.rejected.iter().map(|r| r.count).sum()
}

#[tokio::test]
async fn garbage_udp_datagrams_are_counted_and_store_nothing() {
    let tc = TestCoordinator::start_embedded().await.unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagrams: [&[u8]; 5] = [
        b"",
        b"\x01",
        b"\x01\x10\x11\x12\x13\x14\x15\x16\x17\xff\xff\xff\xff\xff",
        b"\x07not a record at all",
        &[0x01; 3000],
    ];
    for d in datagrams {
        socket.send_to(d, tc.udp_addr).unwrap();
    }
    // UDP has no reply: wait for the refusals to be counted.
    let mut counted = 0;
    for _ in 0..100 {
        counted = rejected(&tc).await;
        if counted >= datagrams.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, datagrams.len() as u64);
    tc.stop().await;
}
