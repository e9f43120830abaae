//! Updates the bootloader fetches itself over the network (`bootloader-net`): real QEMU with
//! restricted user networking, a guest forward from 10.0.2.100:7402 to a loopback proxy in
//! front of the coordinator's device gateway, the real coordinator on its embedded store
//! ([`flashgate_tests::net_rig`]). No host tool runs: nothing talks to the UART until the
//! checks at the end, except to ask a running OS to hand over ("asked to update"). The first
//! test installs the `net` demo OS, whose own receipt over the network (the down-link's status
//! request, answered on its data connection) makes the registry say `updated`.

use std::time::{Duration, Instant};

use flashgate_cli::device_update::Uart;
use flashgate_proto::v1;
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::uart::frame::frame_to_vec;
use flashgate_protocol::uart::{MsgType, Request};
use flashgate_protocol::update::boot_state::Outcome;
use flashgate_protocol::ErrorCode;
use flashgate_tests::net_rig::{NetSetup, FETCH_DEADLINE};
use flashgate_tests::TestBoard;

use crate::{test_device_key, PRODUCT_ID};

const T: Duration = Duration::from_secs(30);

/// The registry saw a verified receipt of `version` installed over the network.
fn installed(version: u32) -> impl Fn(&v1::DeviceUpdateStatus) -> bool {
    move |s| s.os_version == version && s.last_seen_ms > 0
}

/// The `net` demo OS (it answers the coordinator's status request over the network).
fn demo_os_net() -> Vec<u8> {
    let path = flashgate_tests::firmware_dir().join("demo-os-net.bin");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: `cargo xtask firmware`", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_without_an_os_fetches_it_from_the_gateway_and_boots_it() {
    let mut s = NetSetup::new(None).await;
    let os = demo_os_net();
    s.publish_body(&os, 2, vec![s.tb.uid.0.to_vec()]).await;
    assert_eq!(s.status_of(&s.tb.uid.0).await.state, "pending");
    s.power_on();
    // The bootloader's receipt says v2 on trial (in-progress); the coordinator then sends a
    // fresh challenge down to the running OS, whose receipt (v2 running, confirmed) comes back
    // on its data connection: the registry says updated with no host tool.
    let status = s
        .wait_for_status("OS v2 installed and confirmed", |st| {
            installed(2)(st) && st.state == "updated"
        })
        .await;
    assert_eq!(status.bootloader_version, 3);
    let asked =
        s.tc.data
            .down()
            .list(flashgate_coordinator::ids::Serial(s.tb.uid.0))
            .await
            .unwrap();
    assert_eq!(asked.len(), 1, "one status request after the trial receipt");
    let m = &asked[0].record;
    assert_eq!(
        (m.content.as_str(), m.sent_by.as_str()),
        ("status receipt request", "coordinator")
    );
    let (to_device, to_gateway, chunks) = s.proxy.carried.snapshot();
    let package_chunks = (os.len() as u64).div_ceil(4096);
    assert_eq!(chunks, package_chunks, "every chunk once");
    assert!(to_device > os.len() as u64 && to_gateway > 0);
    // It boots v2 and confirmed it: what runs after a power cycle, per a verified receipt.
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
    assert_eq!((r.outcome, r.floor), (Outcome::Updated, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_mid_download_resumes_from_the_next_chunk() {
    let mut s = NetSetup::new(None).await;
    s.publish(2, vec![s.tb.uid.0.to_vec()]).await;
    let total = (s.fw.demo_os.len() as u64).div_ceil(4096);
    s.power_on();
    // Cut the power once a third of the chunks went by.
    let deadline = Instant::now() + FETCH_DEADLINE;
    while s.proxy.carried.snapshot().2 < total / 3 {
        assert!(Instant::now() < deadline, "the download did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.tb.board.power_cut().unwrap();
    let first = s.proxy.carried.snapshot().2;
    assert!(first < total, "cut after {first} of {total} chunks");
    s.tb.board.power_on_again().unwrap();
    s.tb.board.resume().unwrap();
    s.wait_for_status("OS v2 installed after the cut", installed(2))
        .await;
    let second = s.proxy.carried.snapshot().2 - first;
    // The staging slot kept the chunks marked done: the second connection sends the rest (the
    // chunk in flight at the cut again, at most).
    assert!(
        second < total && second + first <= total + 2,
        "{second} chunks after the cut, {first} before, {total} in all"
    );
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 2 });
}

/// Asks the running OS to hand over to its bootloader (the "asked to update" path).
fn enter_update_mode(tb: &TestBoard) {
    let port = format!("tcp:{}", tb.board.serial_addr().unwrap());
    let mut uart = Uart::open(&port).unwrap();
    uart.send(&Request::EnterUpdate).unwrap();
    uart.expect(MsgType::UpdateMode, T).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_packages_are_refused_and_the_old_os_stays() {
    let mut s = NetSetup::new(Some(1)).await;
    // Another registered device (simulated) with its own package of the same release.
    let other = [0xAB; 16];
    s.tc.register_device(PRODUCT_ID, &other, &test_device_key(&other))
        .await
        .unwrap();
    s.publish(2, vec![s.tb.uid.0.to_vec(), other.to_vec()])
        .await;

    // A byte flipped in chunk 3 on its way to the device (checksum recomputed).
    s.proxy.set_rewrite(Box::new(|request| match request {
        Request::UpdateChunk { index: 3, sealed } => {
            let mut sealed = sealed.to_vec();
            sealed[100] ^= 1;
            frame_to_vec(&Request::UpdateChunk {
                index: 3,
                sealed: &sealed,
            })
            .ok()
        }
        _ => None,
    }));
    s.power_on();
    enter_update_mode(&s.tb);
    let refused = s
        .wait_for_status("the tampered chunk refused", |st| st.state == "refused")
        .await;
    assert!(
        refused.detail.contains(&ErrorCode::BadTag.to_string()),
        "{refused:?}"
    );
    assert_eq!(s.running().state, DeviceState::OsRunning { version: 1 });

    // The other device's package, delivered to this one.
    let other_package = s
        .update_client()
        .await
        .get_update_package(s.tc.operator_request(v1::GetUpdatePackageRequest {
            product_id: PRODUCT_ID,
            serial: other.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    s.proxy.set_rewrite(Box::new(move |request| match request {
        Request::UpdateBegin { .. } => frame_to_vec(&Request::UpdateBegin {
            envelope: &other_package.envelope,
        })
        .ok(),
        _ => None,
    }));
    s.tb.board.power_off().unwrap();
    s.power_on();
    enter_update_mode(&s.tb);
    s.wait_for_status("the foreign package refused", |st| {
        st.state == "refused" && st.detail.contains(&ErrorCode::WrongSerial.to_string())
    })
    .await;
    let r = s.running();
    assert_eq!(r.state, DeviceState::OsRunning { version: 1 });
    assert_eq!(r.outcome, Outcome::None);
}
