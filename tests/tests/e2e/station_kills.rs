//! Real kills: the `flashgate-station` process SIGKILLed at seeded points of an install —
//! each step of the flow (connect, handshake, mid-transfer, test, lock, verify: after the
//! target committed but before the journal) and after the journal (before or after the
//! report) — and started again on the same state directory, over and over. Afterwards nothing
//! is lost, nothing counted twice and every board's state is truthful: registry, journal and
//! the boards' own flash agree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flashgate_emulator::BoardFiles;
use flashgate_proto::v1;
use flashgate_protocol::boot::verify_installed_bootloader;
use flashgate_station::provisioning::journal::{Journal, JournalRecord};
use flashgate_tests::chaos::seed;
use flashgate_tests::persisted_flash;
use flashgate_tests::station_harness::{Factory, StationProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where a kill lands: after the event `trigger` (a flow step, or `installed`: journaled),
/// plus a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KillPoint {
    trigger: &'static str,
    delay_ms: u64,
}

/// The triggers, and the range of delays after each (steps measured on an idle machine:
/// connect ~100-300 ms, handshake ~60-180 ms, transfer ~150-900 ms, lock ~5-10 ms, verify
/// ~180 ms; `installed` comes after the journal's fsync, the report right after it).
const TRIGGERS: [(&str, u64, u64); 8] = [
    ("connect", 0, 300),
    ("handshake", 0, 200),
    ("transfer", 0, 250),
    ("transfer", 250, 900),
    ("lock", 0, 10),
    ("verify", 0, 100),
    ("verify", 100, 250),
    ("installed", 0, 30),
];

const KILLS: usize = 32;
const ORDER: u64 = 60;

fn matches(event: &serde_json::Value, trigger: &str) -> bool {
    match trigger {
        "installed" => event["event"] == "installed",
        step => event["event"] == "step" && event["step"] == step,
    }
}

/// Moves the boards of the run that was just killed aside, so the next run (which creates
/// its boards afresh under the same names) leaves them for inspection.
fn keep_boards(state_dir: &Path, kept: &Path, run: usize) -> Vec<PathBuf> {
    let boards = state_dir.join("boards");
    let mut moved = Vec::new();
    let Ok(entries) = std::fs::read_dir(&boards) else {
        return moved;
    };
    for entry in entries.flatten() {
        let to = kept.join(format!(
            "run{run:02}-{}",
            entry.file_name().to_string_lossy()
        ));
        std::fs::rename(entry.path(), &to).unwrap();
        moved.push(to);
    }
    moved
}

fn drain(station: &mut StationProcess, events: &mut Vec<serde_json::Value>) {
    while let Some(event) = station.wait_for_event(|_| true) {
        events.push(event);
    }
}

#[test]
fn station_sigkilled_at_thirty_two_points_of_an_install_loses_nothing_and_counts_nothing_twice() {
    let seed = seed("station_sigkilled_at_thirty_two_points");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let factory = Factory::embedded(ORDER);
    let kept = tempfile::tempdir().unwrap();
    let mut points = BTreeSet::new();
    let mut boards = Vec::new();
    let mut events = Vec::new();
    // Per run: the kill point and the boards it left.
    let mut runs: Vec<(KillPoint, Vec<PathBuf>)> = Vec::new();
    for run in 0..KILLS {
        let (trigger, from, to) = TRIGGERS[run % TRIGGERS.len()];
        // Distinct points: a delay drawn again while it repeats an earlier one.
        let point = loop {
            let point = KillPoint {
                trigger,
                delay_ms: rng.gen_range(from..=to),
            };
            if points.insert(point) {
                break point;
            }
        };
        let spawned = Instant::now();
        let mut station = factory.spawn_station(1, &["--lease-size", "4"]);
        let seen = station.wait_for_event(|e| {
            eprintln!("  {:>6.1?} {e}", spawned.elapsed());
            events.push(e.clone());
            matches(e, trigger)
        });
        assert!(
            seen.is_some(),
            "run {run}: the station exited before {trigger} (seed {seed})"
        );
        std::thread::sleep(Duration::from_millis(point.delay_ms));
        station.kill();
        drain(&mut station, &mut events);
        eprintln!(
            "run {run}: killed at {point:?}, {:.1?} after the start",
            spawned.elapsed()
        );
        let left = keep_boards(factory.state_dir.path(), kept.path(), run);
        boards.extend(left.iter().cloned());
        runs.push((point, left));
    }
    assert!(points.len() >= 30, "{} distinct kill points", points.len());

    // A last run, not killed: re-sends what the journal holds, makes one more device, stops.
    let mut station = factory.spawn_station(1, &["--lease-size", "4", "--max-devices", "1"]);
    let last = Instant::now();
    while let Some(event) = station.wait_for_event(|_| true) {
        eprintln!("  {:>6.1?} {event}", last.elapsed());
        events.push(event);
    }
    let status = station.wait(Duration::from_secs(120));
    assert!(status.success(), "the last run failed: {status}");
    boards.extend(keep_boards(factory.state_dir.path(), kept.path(), KILLS));

    // Journal: every install journaled is registered, and nothing else is.
    let journal = Journal::read(&factory.journal_path()).unwrap();
    let mut completed = BTreeMap::new();
    let mut reported = BTreeSet::new();
    for record in &journal {
        match record {
            JournalRecord::InstallCompleted(report) => {
                assert!(
                    completed
                        .insert(report.serial, report.lease_id.clone())
                        .is_none(),
                    "serial {} journaled twice",
                    hex::encode(report.serial)
                );
            }
            JournalRecord::InstallReported { serial, .. } => {
                reported.insert(*serial);
            }
            _ => {}
        }
    }
    let devices = factory.registered();
    let registered: BTreeMap<[u8; 16], String> = devices
        .iter()
        .map(|d| (d.serial.as_slice().try_into().unwrap(), d.lease_id.clone()))
        .collect();
    assert_eq!(registered.len(), devices.len(), "a serial registered twice");
    assert_eq!(
        registered, completed,
        "registry and journal disagree (seed {seed})"
    );
    let unreported: Vec<_> = completed
        .keys()
        .filter(|s| !reported.contains(*s))
        .collect();
    assert!(
        unreported.is_empty(),
        "journaled but never reported: {unreported:?}"
    );
    // A slot is consumed when a chip is certified; registration follows the journal.
    let certified: BTreeMap<[u8; 16], String> = factory
        .certified()
        .iter()
        .map(|d| (d.serial.as_slice().try_into().unwrap(), d.lease_id.clone()))
        .collect();
    for (serial, lease) in &registered {
        assert_eq!(
            certified.get(serial),
            Some(lease),
            "registered serial {} has no certificate under its lease",
            hex::encode(serial)
        );
    }
    let status = factory.order_status();
    assert_eq!(status.consumed, certified.len() as u64);
    assert_eq!(
        status.consumed + status.remaining + status.reserved,
        ORDER,
        "every slot accounted for"
    );
    // A lease still active holds nothing (used up; it ends at expiry), or is one whose grant
    // a kill cut off before the journal had it: never used, its slots back at expiry.
    let journaled_leases: BTreeSet<String> = journal
        .iter()
        .filter_map(|r| match r {
            JournalRecord::LeaseAcquired { lease_id, .. } => Some(lease_id.clone()),
            _ => None,
        })
        .collect();
    let leases = factory.leases();
    let active: Vec<_> = leases
        .iter()
        .filter(|l| l.state == v1::LeaseState::Active as i32)
        .collect();
    let mut lost_grants = 0;
    for lease in &active {
        if journaled_leases.contains(&lease.lease_id) {
            assert_eq!(
                lease.used, lease.count,
                "the last run left a lease with free slots active: {lease:?}"
            );
        } else {
            assert_eq!(lease.used, 0, "an unjournaled lease was used: {lease:?}");
            lost_grants += 1;
        }
    }
    assert_eq!(
        status.reserved,
        active
            .iter()
            .map(|l| u64::from(l.count - l.used))
            .sum::<u64>()
    );
    for lease in &leases {
        let devices = certified.values().filter(|l| **l == lease.lease_id).count();
        assert_eq!(
            devices, lease.used as usize,
            "lease {} used",
            lease.lease_id
        );
    }

    // Boards: a registered serial is a locked board with a verified bootloader and the key
    // the coordinator holds; an unlocked board is not registered; a locked, valid board that
    // is not registered was cut between its commit and the journal.
    let mut by_serial = BTreeMap::new();
    let mut committed_unjournaled = Vec::new();
    let mut blank_or_partial = 0;
    for dir in &boards {
        let files = BoardFiles::new(dir);
        let Ok(uid) = files.uid() else { continue };
        let serial = uid.0;
        let locked = files.is_debug_locked().unwrap();
        let record = verify_installed_bootloader(&mut persisted_flash(&files)).ok();
        assert!(
            by_serial.insert(serial, dir.clone()).is_none(),
            "two boards with one uid"
        );
        match (registered.contains_key(&serial), locked, record) {
            (true, true, Some(record)) => {
                assert_eq!(record.config.serial, serial);
                assert_eq!(*factory.device_key(&serial), record.device_key);
            }
            (true, ..) => panic!(
                "registered serial {} is not a locked, valid board ({})",
                hex::encode(serial),
                dir.display()
            ),
            (false, true, Some(_)) => {
                assert!(
                    certified.contains_key(&serial),
                    "{} committed without a certificate",
                    dir.display()
                );
                committed_unjournaled.push(dir.clone());
            }
            (false, false, _) => blank_or_partial += 1,
            (false, true, None) => panic!("{} is locked without a valid bootloader", dir.display()),
        }
    }
    for serial in registered.keys() {
        assert!(
            by_serial.contains_key(serial),
            "registered serial {} has no board",
            hex::encode(serial)
        );
    }
    // A commit without a journal entry comes from a kill between the lock and the journal:
    // never one triggered by `installed` (emitted once the journal has the board). Any earlier
    // trigger can get there: since the loader handshakes in 3.4 M instructions, a `connect`
    // trigger's delay of up to 300 ms can outlast the whole install up to the commit.
    for dir in &committed_unjournaled {
        let (point, _) = runs
            .iter()
            .find(|(_, left)| left.contains(dir))
            .expect("a killed run's board");
        assert!(
            point.trigger != "installed",
            "{} committed but not journaled after a kill at {point:?}",
            dir.display()
        );
    }
    eprintln!(
        "station kills (seed {seed}): {} runs killed at {} distinct points; {} boards: {} registered \
         (= journaled), {} committed but cut before the journal (certified, not registered), \
         {} certified in all, {} blank or partial; {} leases ({} granted but cut off before the \
         journal); order {ORDER}: consumed {}, remaining {}; {:.1?}",
        KILLS,
        points.len(),
        boards.len(),
        registered.len(),
        committed_unjournaled.len(),
        certified.len(),
        blank_or_partial,
        leases.len(),
        lost_grants,
        status.consumed,
        status.remaining,
        started.elapsed()
    );
}
