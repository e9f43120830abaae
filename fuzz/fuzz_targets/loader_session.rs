#![no_main]
//! The RAM loader's message handling, behind its sealed frames: a real station session seals
//! what the fuzzer writes, so the loader's state machine (key confirmation, secrets, bootloader
//! transfer, commit, test app, lock) sees every order of well-formed and malformed requests.
//! Modes: 0 a raw frame (not sealed by the station), 1 a `StationMessage` encoding, sealed,
//! 2 the genuine key confirmation, 3 device secrets for the fixture's vendor and authority, the
//! device key sealed to this loader run as the coordinator seals it.
use flashgate_fuzz::{device, messages};
use flashgate_protocol::codec::Codec;
use flashgate_protocol::device_key_transport;
use flashgate_protocol::flash::{RamFlash, RamTarget};
use flashgate_protocol::layout::FLASH_SIZE;
use flashgate_protocol::mailbox;
use flashgate_protocol::provisioning::messages::StationMessage;
use flashgate_protocol::provisioning::station::StationHandshake;
use flashgate_protocol::provisioning::target::LoaderSession;
use flashgate_protocol::provisioning::LoaderHello;
use x25519_dalek::StaticSecret;

const LOADER_DIGEST: [u8; 32] = [0x5A; 32];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let handshake = StationHandshake::new(StaticSecret::from([0x21; 32]), [3; 16], LOADER_DIGEST);
    let params = handshake.params().to_bytes();
    let mut hello = [0u8; 128];
    let (mut loader, n) =
        LoaderSession::start(&params, device::SERIAL, [7; 32], &mut hello)
            .expect("the loader starts from a good parameter block");
    let hello = LoaderHello::read_bytes(&hello[..n]).expect("the loader's hello decodes");
    let mut station = handshake
        .complete(&hello)
        .expect("the station completes the handshake");
    let mut target = RamTarget {
        flash: RamFlash::erased(FLASH_SIZE as usize),
        test_app: Vec::new(),
        test_outcome: (0, b"PASS\n"),
    };
    let record = device::record();
    let sealed_device_key = device_key_transport::seal(
        &hello.loader_public,
        &device::SERIAL,
        &record.certificate,
        &device::DEVICE_KEY,
        &mut rand_core::OsRng,
    )
    .expect("the fixture's key seals to the loader");
    let mut reply = vec![0u8; mailbox::OUT_MAX];
    for m in messages(data) {
        let sealed = match m.mode % 4 {
            0 => Ok(m.bytes.to_vec()),
            1 => match StationMessage::read_bytes(m.bytes) {
                Ok(msg) => station.seal_to_vec(&msg),
                Err(_) => continue,
            },
            2 => station.seal_to_vec(&station.key_confirm()),
            _ => station.seal_to_vec(&StationMessage::DeviceSecrets {
                config: device::config(),
                sealed_device_key: &sealed_device_key,
                certificate: record.certificate,
            }),
        };
        let Ok(mut frame) = sealed else {
            continue;
        };
        if let Ok(n) = loader.handle(&mut frame, &mut target, &mut reply) {
            assert!(n <= reply.len());
            station
                .open(&mut reply[..n])
                .expect("a reply the loader sends opens at the station");
        }
    }
});
