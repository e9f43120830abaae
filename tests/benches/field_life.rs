//! Figures for the field-life issue, measured in one run and printed side by side: what a
//! device pays for its first sealed data record against what a TLS 1.3 session costs before
//! its first application data.
//!
//! - **Instructions** on the emulated Cortex-M4 (QEMU `-icount shift=0`, 1 SysTick tick = 40
//!   instructions): the demo OS's own `first_record_ticks` (journal + key derivation + seal +
//!   UART send, read from `OS_STATUS`), and the `crypto-bench` firmware, which times the same
//!   data path and RustCrypto `p256` key generation, ECDH and one ECDSA verify with SysTick and
//!   measures each one's stack high-water by painting.
//! - **Bytes**: the demo OS's first UART frame and record; a loopback TLS 1.3 handshake with
//!   rustls (ring provider, P-256 key share, self-signed P-256 certificate from rcgen).
//! - **Per-record overhead** of both.
//! - **Coordinator ingest** over loopback: gRPC `IngestRecords` batches and UDP datagrams, with
//!   records sealed on the host by the protocol crate.
//!
//! `cargo bench -p flashgate-tests --bench field_life` (firmware built by `cargo xtask firmware`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench: a panic is how it reports a failure"
)]

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_coordinator::config::CoordinatorConfig;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_emulator::StartOptions;
use flashgate_proto::v1;
use flashgate_protocol::codec::Codec;
use flashgate_protocol::data_stream::{
    self, epoch_key, Direction, Header, RecordKind, RecordSealer, COMPACT_HEADER_LEN, TAG_LEN,
    V1_TYPICAL_OVERHEAD,
};
use flashgate_protocol::uart::{MsgType, OsStatus, Request, OVERHEAD};
use flashgate_station::device_link::DeviceLink;
use flashgate_tests::crypto_bench::crypto_bench;
use flashgate_tests::{firmware_size, Firmware, TestBoard, Vendor};
use zeroize::Zeroizing;

/// Instructions per SysTick tick under `-icount shift=0` on mps2 (1 GHz virtual / 25 MHz).
const INSTRUCTIONS_PER_TICK: u64 = 40;
const WAIT: Duration = Duration::from_secs(60);

fn key(serial: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    flashgate_tests::test_device_key(7, serial)
}

fn instr(ticks: u64) -> u64 {
    ticks * INSTRUCTIONS_PER_TICK
}

/// What the demo OS reports about its first record on a provisioned board under icount.
struct FirstRecord {
    ticks: u64,
    record: Vec<u8>,
    body_len: usize,
}

fn demo_os_first_record() -> FirstRecord {
    let fw = Firmware::load();
    let vendor = Vendor::new(7);
    let plan = vendor
        .plan(&fw, 1)
        .with_chunk_size(flashgate_protocol::provisioning::messages::MAX_IMAGE_CHUNK);
    let icount = StartOptions {
        icount: true,
        ..StartOptions::default()
    };
    let os = vendor.sign_os(&fw.demo_os, 5);
    let (mut tb, _) = TestBoard::provisioned(plan, vendor.issuer(), icount, Some(&os));
    let mut link =
        DeviceLink::connect_tcp(tb.board.serial_addr().unwrap(), Duration::from_secs(5)).unwrap();
    tb.board.resume().unwrap();
    let record = loop {
        let (ty, payload) = link.receive("first record", WAIT).unwrap();
        if ty == MsgType::DataRecord {
            break payload;
        }
    };
    link.send(&Request::OsStatus).unwrap();
    let status = loop {
        let (ty, payload) = link.receive("status", WAIT).unwrap();
        if ty == MsgType::OsStatusReply {
            break OsStatus::read_bytes(&payload).expect("a well-formed status");
        }
    };
    let ticks = status.first_record_ticks;
    let (header, _) = Header::decode(&record).unwrap();
    let mut opened = record.clone();
    let epoch = header
        .epoch(None)
        .expect("a fresh board is in its first epochs");
    let k = epoch_key(&key(&tb.uid.0), Direction::Up, epoch);
    let o = data_stream::open_in_place(&k, &mut opened).expect("the first record opens");
    tb.board.kill();
    FirstRecord {
        ticks: u64::from(ticks),
        body_len: o.body.len(),
        record,
    }
}

/// A loopback TLS 1.3 handshake measured with rustls.
struct Tls {
    cert_der: usize,
    client_to_server: usize,
    server_to_client: usize,
    /// (direction, outer content type, record length incl. 5-byte header), in order.
    records: Vec<(&'static str, u8, usize)>,
    /// One application-data record carrying `body` bytes.
    app_record: usize,
}

fn tls_records(dir: &'static str, bytes: &[u8], out: &mut Vec<(&'static str, u8, usize)>) {
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]])) + 5;
        out.push((dir, bytes[at], len));
        at += len;
    }
}

fn tls_handshake(body: &[u8]) -> Tls {
    use rustls::crypto::ring as provider;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let certified = rcgen::generate_simple_self_signed(vec!["device.example".into()])
        .expect("rcgen makes a P-256 certificate");
    let cert_der = certified.cert.der().clone();
    let key_der =
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut p = provider::default_provider();
    p.kx_groups = vec![provider::kx_group::SECP256R1];
    p.cipher_suites = vec![provider::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let p = Arc::new(p);
    let mut server_cfg = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    // Tickets come after the server's Finished and are not needed for the first data.
    server_cfg.send_tls13_tickets = 0;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.clone()).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_cfg), "device.example".try_into().unwrap())
            .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();

    let mut records = Vec::new();
    let (mut c2s, mut s2c) = (0, 0);
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        c2s += buf.len();
        tls_records("client", &buf, &mut records);
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        s2c += buf.len();
        tls_records("server", &buf, &mut records);
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
        if !client.is_handshaking()
            && !server.is_handshaking()
            && !client.wants_write()
            && !server.wants_write()
        {
            break;
        }
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    client.writer().write_all(body).unwrap();
    let mut buf = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut buf).unwrap();
    }
    server.read_tls(&mut buf.as_slice()).unwrap();
    server.process_new_packets().unwrap();
    let mut got = vec![0u8; body.len()];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(got, body);
    Tls {
        cert_der: cert_der.len(),
        client_to_server: c2s,
        server_to_client: s2c,
        records,
        app_record: buf.len(),
    }
}

/// Ingest rates over loopback: (gRPC records/s, accepted, UDP records/s, accepted, sent).
struct Ingest {
    grpc_rate: f64,
    grpc_accepted: u64,
    grpc_sent: usize,
    udp_rate: f64,
    udp_processed: u64,
    udp_accepted: u64,
    udp_sent: usize,
}

/// `devices` registered devices, `per_device` records each, interleaved (counters ascending
/// per device), body `body`.
fn sealed_stream(
    first: u8,
    devices: u8,
    per_device: usize,
    body: &[u8],
) -> (Vec<[u8; 16]>, Vec<Vec<u8>>) {
    let serials: Vec<[u8; 16]> = (0..devices)
        .map(|i| {
            let mut s = *b"FIELD-LIFE-00000";
            s[0] = b'A' + first + i;
            s
        })
        .collect();
    let mut sealers: Vec<RecordSealer> = serials
        .iter()
        .map(|s| RecordSealer::new(&key(s), s, 0, 0, u32::MAX - 1))
        .collect();
    let mut records = Vec::with_capacity(devices as usize * per_device);
    let mut buf = [0u8; data_stream::MAX_RECORD_LEN];
    for _ in 0..per_device {
        for sealer in &mut sealers {
            let n = sealer.seal(RecordKind::Telemetry, body, &mut buf).unwrap();
            records.push(buf[..n].to_vec());
        }
    }
    (serials, records)
}

/// Records/s one loopback address may send to the bench's coordinator: all of the bench's
/// traffic comes from one address, which the default (`--data-source-rate` 5,000) would cap.
const BENCH_SOURCE_RATE: u32 = 10_000_000;

async fn ingest(body: &[u8]) -> Ingest {
    let tc = TestCoordinator::start_embedded_with(CoordinatorConfig {
        data_source_rate: BENCH_SOURCE_RATE,
        ..test_config()
    })
    .await
    .unwrap();

    // gRPC: batches of MAX_BATCH from one client, sequentially.
    let (serials, records) = sealed_stream(0, 8, 2048, body);
    for s in &serials {
        tc.register_device(7, s, &key(s)).await.unwrap();
    }
    let mut client = tc.coordinator_data_client().await;
    let started = Instant::now();
    let mut grpc_accepted = 0;
    for batch in records.chunks(flashgate_coordinator::data_stream::MAX_BATCH) {
        let verdicts = client
            .ingest_records(v1::IngestRecordsRequest {
                records: batch.to_vec(),
                source: "field_life bench".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .verdicts;
        grpc_accepted += verdicts.iter().filter(|v| v.accepted).count() as u64;
    }
    let grpc_rate = records.len() as f64 / started.elapsed().as_secs_f64();
    let grpc_sent = records.len();

    // UDP: one record per datagram; at most 128 in flight (the receive buffer of a loopback
    // socket holds a few hundred small datagrams), so losses are the coordinator's, not ours.
    let (serials, records) = sealed_stream(8, 8, 2048, body);
    for s in &serials {
        tc.register_device(7, s, &key(s)).await.unwrap();
    }
    let data = tc.data.clone();
    let base = data.stats();
    let base_accepted = base.accepted;
    let processed = move || {
        let s = data.stats();
        (s.accepted - base.accepted) + s.rejected.values().sum::<u64>()
            - base.rejected.values().sum::<u64>()
    };
    let to = tc.udp_addr;
    let sent = records.len();
    let (udp_processed, elapsed) = tokio::task::spawn_blocking(move || {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        for (i, r) in records.iter().enumerate() {
            while (i as u64).saturating_sub(processed()) >= 128 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(20));
            }
            udp.send_to(r, to).unwrap();
        }
        let settle = Instant::now() + Duration::from_secs(5);
        while processed() < records.len() as u64 && Instant::now() < settle {
            std::thread::sleep(Duration::from_micros(20));
        }
        (processed(), started.elapsed())
    })
    .await
    .unwrap();
    let udp_rate = udp_processed as f64 / elapsed.as_secs_f64();
    let udp_accepted = tc.data.stats().accepted - base_accepted;
    tc.stop().await;
    Ingest {
        grpc_rate,
        grpc_accepted,
        grpc_sent,
        udp_rate,
        udp_processed,
        udp_accepted,
        udp_sent: sent,
    }
}

fn main() {
    // 1. The device side, on the emulated Cortex-M4.
    let report = crypto_bench();
    let get = |name: &str| {
        *report
            .get(name)
            .unwrap_or_else(|| panic!("crypto-bench report has no {name}: {report:?}"))
    };
    assert_eq!(
        get("p256_ecdsa_verify_ok").0,
        1,
        "the ECDSA signature verifies"
    );
    assert_eq!(
        get("p256_ecdh_agrees").0,
        1,
        "both sides agree on the ECDH secret"
    );
    assert_eq!(get("data_journal_erased").0, 1);
    assert_eq!(
        get("boot_check_identity_ok").0,
        1,
        "the genuine record passes the boot checks"
    );
    let first = demo_os_first_record();
    let body = vec![b'x'; first.body_len];

    // 2. TLS 1.3 on the host.
    let tls = tls_handshake(&body);
    // 3. Ingest over loopback.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ing = rt.block_on(ingest(&body));

    let (data_first, data_stack) = get("data_first_record");
    let (keygen, keygen_stack) = get("p256_keygen");
    let (ecdh, ecdh_stack) = get("p256_ecdh");
    let (verify, verify_stack) = get("p256_ecdsa_verify");
    let (sign, sign_stack) = get("p256_ecdsa_sign");
    let (hkdf, hkdf_stack) = get("data_epoch_key_hkdf");
    let (seal, seal_stack) = get("data_seal_39b");
    let tls_pk = keygen + ecdh + verify;
    let tls_stack = keygen_stack.max(ecdh_stack).max(verify_stack);
    let os_instr = instr(first.ticks);
    let record_len = first.record.len();
    let frame_len = record_len + OVERHEAD;
    let tls_total = tls.client_to_server + tls.server_to_client;
    let tls_app_overhead = tls.app_record - body.len();
    let record_overhead = record_len - first.body_len;

    println!("== field life: first sealed record vs TLS 1.3 (P-256), emulated Cortex-M4, QEMU -icount shift=0");
    println!("  (1 SysTick tick = {INSTRUCTIONS_PER_TICK} instructions; firmware profile release: opt-level \"s\", lto)");
    println!();
    println!(
        "  {:<44} {:>26} {:>28}",
        "", "flashgate data record", "TLS 1.3 client, minimum"
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "instructions before first data (device)",
        format!("{os_instr} (demo OS)"),
        format!("{} (kg+ecdh+vfy)", instr(tls_pk))
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "  same, crypto-bench (SysTick around calls)",
        instr(data_first),
        instr(tls_pk)
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "  ratio",
        "1x",
        format!("{:.0}x", instr(tls_pk) as f64 / os_instr as f64)
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "bytes on the wire before first data",
        "0 (no handshake)",
        format!("{tls_total} (rustls, measured)")
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        format!("bytes of the first data ({} B body)", first.body_len),
        format!("{record_len} record / {frame_len} frame"),
        format!("{} (one TLS record)", tls.app_record)
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "bytes to first data, total",
        frame_len,
        tls_total + tls.app_record
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "per-record overhead (bytes)",
        format!("{record_overhead} (hdr+tag)"),
        format!("{tls_app_overhead} (hdr+type+tag)")
    );
    println!(
        "  {:<44} {:>26} {:>28}",
        "stack high-water (painted)",
        format!("{data_stack} B"),
        format!("{tls_stack} B (max of 3 ops)")
    );
    println!();
    println!(
        "== device detail (crypto-bench: SysTick around each call, stack painted below the caller)"
    );
    for (name, ticks, stack, what) in [
        (
            "data_first_record",
            data_first,
            data_stack,
            "journal load+reserve, HKDF, fmt, seal, frame; record+frame buffers on stack",
        ),
        (
            "data_epoch_key_hkdf",
            hkdf,
            hkdf_stack,
            "HKDF-SHA256 extract + expand(32)",
        ),
        (
            "data_seal_39b",
            seal,
            seal_stack,
            "ChaCha20-Poly1305 seal of a 39 B body + header",
        ),
        (
            "p256_keygen",
            keygen,
            keygen_stack,
            "random scalar + fixed-base mult + SEC1 encode",
        ),
        (
            "p256_ecdh",
            ecdh,
            ecdh_stack,
            "parse peer SEC1 point + variable-base mult",
        ),
        (
            "p256_ecdsa_verify",
            verify,
            verify_stack,
            "parse key + SHA-256(130 B CertificateVerify) + verify",
        ),
        (
            "p256_ecdsa_sign",
            sign,
            sign_stack,
            "(server side, for reference) RFC 6979 sign",
        ),
    ] {
        println!(
            "  {name:<20} {:>11} instr {:>9} ticks {:>6} B stack  {what}",
            instr(ticks),
            ticks,
            stack
        );
    }
    let (boot_check, boot_check_stack) = get("boot_check_identity");
    println!(
        "  boot checks (certificate ed25519 verify_strict + binding), every reset: {} instr, {boot_check_stack} B stack; reference, same run: p256_ecdsa_verify {} instr ({:.2}x)",
        instr(boot_check),
        instr(verify),
        boot_check as f64 / verify as f64
    );
    println!(
        "  demo OS first_record_ticks (OS_STATUS): {} ticks = {os_instr} instructions (incl. UART send of {frame_len} B)",
        first.ticks
    );
    println!(
        "  stack figures are SP-relative upper bounds: an empty closure measures {} B (paint margin)",
        get("empty").1
    );
    println!(
        "  a TLS client that also checks a 1-cert chain adds one more verify: {} instructions in all",
        instr(tls_pk + verify)
    );
    for (name, what) in [("demo-os", "demo OS"), ("crypto-bench", "crypto-bench")] {
        if let Some((text, data, bss)) = firmware_size(name) {
            println!("  {what:<13} text {text} B, data {data} B, bss {bss} B (arm-none-eabi-size)");
        }
    }
    println!();
    println!("== per-record overhead (flashgate, docs/protocol.md §8)");
    println!(
        "  demo OS record (v2): header {} (flags 1 [format, kind, epoch mod 32] + handle 3 + counter u16 2) + tag {TAG_LEN} = {record_overhead} B, every record; goal <= 22 B with a 16-byte tag: {}",
        record_overhead - TAG_LEN,
        if record_overhead <= 22 { "met" } else { "MISSED" }
    );
    assert_eq!(
        record_overhead - TAG_LEN,
        COMPACT_HEADER_LEN,
        "the demo OS sends v2"
    );
    println!(
        "  references: v1 record {V1_TYPICAL_OVERHEAD} B typical (format 1 + device id 8 + epoch varint 1 + counter varint 2 + kind 1 + tag 16); OSCORE (RFC 8613) 11-14 B with an 8-byte tag, i.e. 3-6 B beside its tag (flashgate: {} B); TLS 1.3 {tls_app_overhead} B (this run); UART frame adds {OVERHEAD} B",
        record_overhead - TAG_LEN
    );
    for payload in [8usize, 39, 128, 1024] {
        let rec = payload + record_overhead;
        println!(
            "  body {payload:>4} B: record {rec:>5} B ({:>5.1} % overhead), frame {:>5} B; TLS 1.3 AES-128-GCM record {:>5} B",
            100.0 * record_overhead as f64 / rec as f64,
            rec + OVERHEAD,
            payload + tls_app_overhead
        );
    }
    println!();
    println!(
        "== TLS 1.3 handshake, measured with rustls 0.23 (ring provider, TLS13_AES_128_GCM_SHA256, secp256r1 share only, rcgen self-signed P-256 cert of {} B DER, no client auth, no tickets, no ALPN)",
        tls.cert_der
    );
    for (dir, ty, len) in &tls.records {
        let what = match ty {
            22 => "handshake (plaintext: ClientHello / ServerHello)",
            20 => "change_cipher_spec (middlebox compatibility)",
            23 => "encrypted (EE+Cert+CV+Finished, or Finished)",
            _ => "other",
        };
        println!("  {dir:<6} record type {ty:>2} {len:>5} B  {what}");
    }
    println!(
        "  client→server {} B, server→client {} B, total {tls_total} B before the first application record",
        tls.client_to_server, tls.server_to_client
    );
    let ccs: usize = tls.records.iter().filter(|r| r.1 == 20).map(|r| r.2).sum();
    println!(
        "  of which {ccs} B middlebox-compatibility change_cipher_spec: {} B without them",
        tls_total - ccs
    );
    println!();
    println!(
        "== coordinator ingest over loopback (TestCoordinator, embedded store; 2 shared cores; \
         --data-source-rate {BENCH_SOURCE_RATE}, since one address sends it all)"
    );
    println!(
        "  gRPC IngestRecords, batches of {}: {:>8.0} records/s ({} of {} accepted)",
        flashgate_coordinator::data_stream::MAX_BATCH,
        ing.grpc_rate,
        ing.grpc_accepted,
        ing.grpc_sent
    );
    println!(
        "  UDP, one record per datagram (≤128 in flight): {:>8.0} records/s ({} processed, {} accepted of {} sent)",
        ing.udp_rate, ing.udp_processed, ing.udp_accepted, ing.udp_sent
    );
}
