//! The station worker end to end: coordinator + one station with emulated targets, one actor
//! per probe, leases, the journal, reports — and the faults it must survive.

use std::collections::BTreeSet;

use flashgate_proto::v1;
use flashgate_protocol::hello::verify_response;
use flashgate_station::events::Event;
use flashgate_station::provisioning::journal::{Journal, JournalRecord};
use flashgate_station::station::run_station;
use flashgate_tests::bay::TestBay;
use flashgate_tests::faults::{image_frame, LinkFault};
use flashgate_tests::station_harness::{Factory, BOOTLOADER_VERSION, PRODUCT_ID};

/// Checks the registry: exactly `count` distinct devices, all provisioned, each hello proof
/// (as captured by the station) verifying under the coordinator's copy of that device's key.
fn assert_registry(factory: &Factory, events: &[Event], count: usize) {
    let devices = factory.registered();
    let serials: BTreeSet<Vec<u8>> = devices.iter().map(|d| d.serial.clone()).collect();
    assert_eq!(devices.len(), count, "registered devices: {devices:#?}");
    assert_eq!(serials.len(), count, "a serial registered twice");
    for device in &devices {
        assert_eq!(device.outcome, v1::InstallOutcome::Provisioned as i32);
        assert_eq!(device.bootloader_version, BOOTLOADER_VERSION);
        assert_eq!(device.product_id, PRODUCT_ID);
        assert_eq!(device.station_id, factory.station_id);
    }
    let status = factory.order_status();
    assert_eq!(
        status.consumed,
        factory.certified().len() as u64,
        "one slot per certificate"
    );

    let mut keys = BTreeSet::new();
    for device in &devices {
        let serial: [u8; 16] = device.serial.as_slice().try_into().unwrap();
        let key = factory.device_key(&serial);
        assert!(keys.insert(*key), "two devices share a key");
        let installed = events
            .iter()
            .find_map(|e| match e {
                Event::Installed {
                    serial: s,
                    hello_challenge: Some(c),
                    hello_response: Some(r),
                    ..
                } if *s == hex::encode(serial) => Some((c.clone(), r.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no verified hello for {}", hex::encode(serial)));
        let challenge: [u8; 32] = hex::decode(&installed.0).unwrap().try_into().unwrap();
        let raw = hex::decode(&installed.1).unwrap();
        let info = verify_response(&key, &challenge, &raw)
            .expect("hello proof verifies under the coordinator's key");
        assert_eq!(info.serial, serial);
        assert!(verify_response(&[0u8; 32], &challenge, &raw).is_err());
    }
}

fn journal(factory: &Factory) -> Vec<JournalRecord> {
    Journal::read(&factory.journal_path()).unwrap()
}

fn order_of_six_on_four_probes(factory: &Factory) {
    let options = factory.station_options(4);
    let events = options.events.clone();
    let summary = run_station(options).expect("station runs");
    assert_eq!(summary.provisioned, 6, "{summary:?}");
    assert_eq!(summary.reported, 6, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert_eq!(summary.failures_reported, 0, "{summary:?}");
    assert_eq!(summary.unreported, 0);
    assert!(
        summary.stop_reason.starts_with("quota spent"),
        "{summary:?}"
    );
    assert_registry(factory, &events.events(), 6);
    let status = factory.order_status();
    assert_eq!(
        (status.remaining, status.reserved, status.failed),
        (0, 0, 0)
    );

    // Further targets are refused: a second run makes nothing.
    let options = factory.station_options(4);
    let summary = run_station(options).expect("station runs again");
    assert_eq!(summary.provisioned, 0);
    assert!(summary.stop_reason.starts_with("quota spent"));
    assert_eq!(factory.registered().len(), 6);
}

#[test]
fn station_with_four_probes_makes_exactly_the_order_on_the_embedded_store() {
    order_of_six_on_four_probes(&Factory::embedded(6));
}

#[test]
fn station_with_four_probes_makes_exactly_the_order_on_etcd() {
    order_of_six_on_four_probes(&Factory::on_etcd(6));
}

#[test]
fn a_target_killed_mid_transfer_is_failed_not_registered_and_the_others_carry_on() {
    let factory = Factory::embedded(4);
    let mut options = factory.station_options(1);
    // A second bay whose first board loses power as its third bootloader chunk goes out.
    let faulty = TestBay::new("bay-cut").with_fault(
        0,
        LinkFault::KillTargetAtFrame {
            frame: image_frame(2),
        },
    );
    options.fixtures.push(Box::new(faulty));
    let events = options.events.clone();
    let summary = run_station(options).expect("station runs");
    // The board was certified before the kill: its certificate is one of the order's four
    // (it comes back from rework with the same one), so three others are made.
    assert_eq!(summary.failed, 1, "{summary:?}");
    assert_eq!(summary.test_failed, 0, "{summary:?}");
    assert_eq!(summary.provisioned, 3, "{summary:?}");
    assert_eq!(summary.reported, 3, "{summary:?}");
    assert_eq!(summary.failures_reported, 1, "{summary:?}");
    assert_eq!(summary.unreported, 0, "{summary:?}");
    let events = events.events();
    let failure = events
        .iter()
        .find_map(|e| match e {
            Event::TargetFailed {
                probe,
                reason,
                serial,
                ..
            } => Some((probe.clone(), reason.clone(), serial.clone())),
            _ => None,
        })
        .expect("a failure event");
    assert_eq!(failure.0, "bay-cut");
    assert!(
        failure.1.contains("debug link"),
        "a probe fault: {}",
        failure.1
    );
    // The serial was known (the kill came after the handshake): one FAILED report, recorded by
    // the coordinator; the chip stays CERTIFIED (its slot is its certificate's), not installed.
    let serial = failure.2.expect("the serial was known before the kill");
    let recorded = factory.failures();
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(hex::encode(&recorded[0].serial), serial);
    assert_eq!(recorded[0].station_id, factory.station_id);
    assert!(recorded[0].reason.contains("transfer"), "{recorded:#?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::FailureReported { serial: s, .. } if *s == serial)));
    let journaled = journal(&factory);
    assert!(journaled.iter().any(|r| matches!(
        r,
        JournalRecord::InstallFailed(f) if hex::encode(f.serial) == serial && f.is_failure()
    )));
    let status = factory.order_status();
    assert_eq!(
        (
            status.consumed,
            status.failed,
            status.remaining,
            status.reserved
        ),
        (4, 1, 0, 0),
        "the order's count stays exact"
    );
    assert!(
        factory
            .registered()
            .iter()
            .all(|d| hex::encode(&d.serial) != serial
                || d.state == v1::DeviceState::Certified as i32),
        "the failed board is not installed"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Probe { action, .. } if action == "restarted")),
        "the failed probe's actor is restarted"
    );
    assert_registry(&factory, &events, 3);
}

/// No certificate, no device: while the coordinator is unreachable the targets wait at the
/// handshake (the station retries issuance within the step timeout) and nothing is consumed;
/// when it is back, the line carries on and makes exactly the order.
#[test]
fn a_coordinator_outage_holds_the_targets_at_the_handshake_and_the_line_resumes() {
    let factory = Factory::embedded(4);
    let options = factory.station_options(2);
    let events = options.events.clone();
    let proxy = &factory.proxy;
    std::thread::scope(|scope| {
        let station = scope.spawn(move || run_station(options));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !events
            .events()
            .iter()
            .any(|e| matches!(e, Event::Lease { .. }))
        {
            assert!(std::time::Instant::now() < deadline, "no lease");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        proxy.down();
        std::thread::sleep(std::time::Duration::from_secs(3));
        proxy.up();
        let summary = station.join().unwrap().expect("station runs");
        assert_eq!(summary.provisioned, 4, "{summary:?}");
        assert_eq!(summary.failed, 0, "the targets waited: {summary:?}");
        assert_eq!(summary.reported, 4, "{summary:?}");
    });
    assert_registry(&factory, &events.events(), 4);
}

#[test]
fn a_station_killed_mid_lease_resumes_from_its_journal_without_double_counting() {
    let factory = Factory::embedded(5);
    // First run, as a process: it gets its lease, then the coordinator goes away, so installs
    // are journaled but not reported; after two of them the process is killed (SIGKILL).
    let mut station = factory.spawn_station(1, &["--lease-size", "5"]);
    station
        .wait_for_event(|e| e["event"] == "lease")
        .expect("the station gets a lease");
    let mut first_run = Vec::new();
    for _ in 0..2 {
        let installed = station
            .wait_for_event(|e| e["event"] == "installed")
            .expect("an install journaled");
        first_run.push(serde_json::from_value::<Event>(installed).expect("an event"));
    }
    station.kill();
    // Lines the station printed before it died are still in the pipe.
    while let Some(installed) = station.wait_for_event(|e| e["event"] == "installed") {
        first_run.push(serde_json::from_value::<Event>(installed).expect("an event"));
    }
    let journaled = journal(&factory)
        .iter()
        .filter(|r| matches!(r, JournalRecord::InstallCompleted(_)))
        .count() as u32;
    assert!(journaled >= 2, "{journaled} installs journaled");
    let status = factory.order_status();
    assert_eq!(
        status.reserved + status.consumed,
        5,
        "the lease is still held (its slots reserved or spent on certificates)"
    );

    // A board in flight when the process died may hold a certificate (its slot is spent: it
    // goes to rework, where it gets the same one back).
    let stranded = factory.certified().len() as u32 - journaled;
    // Second run: re-sends what the journal holds, resumes the same lease, makes the rest.
    let options = factory.station_options(2);
    let events = options.events.clone();
    let summary = run_station(options).expect("second run");
    assert_eq!(summary.provisioned, 5 - journaled - stranded, "{summary:?}");
    assert!(events.events().iter().any(
        |e| matches!(e, Event::Lease { how, used, .. } if how == "resumed" && *used == journaled)
    ));
    let leases: BTreeSet<String> = journal(&factory)
        .iter()
        .filter_map(|r| match r {
            JournalRecord::LeaseAcquired { lease_id, .. } => Some(lease_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(leases.len(), 1, "one lease across the restart");
    // Every hello proof: the killed run's (from its `--json` events) and the second run's.
    // (A crash between an install's fsync and its event line leaves no event: skip then.)
    if first_run.len() == journaled as usize {
        first_run.extend(events.events());
        assert_registry(&factory, &first_run, (5 - stranded) as usize);
    }
    let status = factory.order_status();
    assert_eq!(
        (status.remaining, status.reserved, status.consumed),
        (0, 0, 5)
    );
}

#[test]
fn a_report_whose_answer_was_lost_is_accepted_when_re_sent_and_a_duplicate_is_not() {
    use flashgate_station::coordinator_client::CoordinatorClient;
    use flashgate_station::identity::{StationIdentity, StationKek};
    use flashgate_station::provisioning::report::{Outcome, TestOutcome, TestRecord};
    use flashgate_station::provisioning::{Delivery, Report};

    let factory = Factory::embedded(2);
    let kek = StationKek::from_hex(factory.station_kek_hex()).unwrap();
    let identity = StationIdentity::load_or_create(factory.state_dir.path(), &kek).unwrap();
    let (first, resent, other) = factory.rt.block_on(async {
        let client = CoordinatorClient::new(
            &factory.coordinator.endpoint,
            &factory.coordinator.security(),
            identity.signer(),
        )
        .unwrap();
        let lease = client
            .acquire_lease(&factory.order.order_id, 2, 0)
            .await
            .expect("a lease");
        let body = flashgate_proto::lease::verify_signed_lease(
            &lease,
            &factory.coordinator.coordinator.lease_verifying_key(),
        )
        .unwrap();
        let loader = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        client
            .issue_device_certificate(
                &body.lease_id,
                &[0x5A; 16],
                &x25519_dalek::PublicKey::from(&loader).to_bytes(),
            )
            .await
            .expect("the chip's certificate");
        let report = Report {
            lease_id: body.lease_id.clone(),
            serial: [0x5A; 16],
            bootloader_version: BOOTLOADER_VERSION,
            test: TestRecord {
                outcome: TestOutcome::None,
                log: String::new(),
            },
            outcome: Outcome::Provisioned,
            installed_at_ms: flashgate_proto::clock::now_ms(),
            failure_reason: None,
            hello: None,
            trace_parent: None,
            os_version: 0,
            os_receipt: Vec::new(),
        };
        let first = client.report_install(report.to_request()).await;
        // The answer was lost: the station sends the same journaled report again.
        let resent = client.report_install(report.to_request()).await;
        // Another install claiming the same serial (a cloned board, a replayed journal line).
        let mut clone = report.clone();
        clone.installed_at_ms += 1;
        let other = client.report_install(clone.to_request()).await;
        (
            Delivery::of(&report, &first),
            Delivery::of(&report, &resent),
            Delivery::of(&clone, &other),
        )
    });
    assert_eq!(first, Delivery::Accepted);
    assert_eq!(
        resent,
        Delivery::Accepted,
        "the re-sent report is the same install"
    );
    assert!(
        matches!(
            other,
            Delivery::Refused {
                code: tonic::Code::AlreadyExists,
                ..
            }
        ),
        "{other:?}"
    );
    // Certified (no hello proof in this hand-made report), once.
    assert_eq!(factory.certified().len(), 1);
    assert_eq!(
        factory.order_status().consumed,
        1,
        "the re-send consumed nothing"
    );
}
