//! The station's journal on a tiny filesystem that fills up: a 8 KiB tmpfs (half of it taken
//! by a filler file), mounted in a private mount namespace of the station process
//! (`unshare -rm`, unprivileged), with the journal file symlinked onto it. The station must stop
//! taking targets and say why; nothing may be reported that is not journaled; and once it has
//! room again (the journal copied back onto a roomy disk) it starts on that journal, re-sends
//! what it holds and carries on, twice (a torn last line must not swallow the next record).
//!
//! An fsync that fails is `station_fsync.rs` (an LD_PRELOAD shim: no dm-flakey or FUSE here).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use flashgate_station::provisioning::journal::{Journal, JournalRecord, JOURNAL_FILE};
use flashgate_tests::station_harness::{Factory, StationProcess};

/// Mounts a tmpfs of `size` on `$0`, fills `filler` bytes of it, runs the station (`"$@"`),
/// then copies the journal out to `$OUT` (the mount vanishes with the namespace).
const WRAPPER: &str = r#"mount -t tmpfs -o size=8k tmpfs "$0" || exit 97
head -c 4096 /dev/zero > "$0/filler"
"$@"; rc=$?
cp "$0/journal.jsonl" "$OUT/journal.jsonl"
exit $rc"#;

pub(crate) fn events_of(station: &mut StationProcess) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    while let Some(event) = station.wait_for_event(|_| true) {
        events.push(event);
    }
    events
}

fn serials(events: &[serde_json::Value], kind: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .filter_map(|e| e["serial"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) fn journaled(path: &std::path::Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut completed = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for record in Journal::read(path).expect("the journal reads") {
        match record {
            JournalRecord::InstallCompleted(r) => {
                assert!(completed.insert(hex::encode(r.serial)), "journaled twice");
            }
            JournalRecord::InstallReported { serial, .. } => {
                reported.insert(hex::encode(serial));
            }
            _ => {}
        }
    }
    (completed, reported)
}

pub(crate) fn registered(factory: &Factory) -> BTreeSet<String> {
    factory
        .registered()
        .iter()
        .map(|d| hex::encode(&d.serial))
        .collect()
}

/// After a run stopped by a journal fault: checks it said why (`cause` in its stop reason),
/// registered and reported nothing the journal (`journal`) does not hold, printed `installed`
/// exactly for what it holds, and took no target after the failure. Returns the journaled
/// installs, the registered devices and the stop reason.
pub(crate) fn stopped_with_nothing_unjournaled(
    events: &[serde_json::Value],
    factory: &Factory,
    journal: &std::path::Path,
    cause: &str,
) -> (BTreeSet<String>, BTreeSet<String>, String) {
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary event");
    let reason = summary["stop_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("journal cannot be written") && reason.contains(cause),
        "stop reason: {reason:?}"
    );
    let (completed, _) = journaled(journal);
    let registered_before = registered(factory);
    assert!(
        registered_before.is_subset(&completed),
        "registered but not journaled: {:?}",
        registered_before.difference(&completed).collect::<Vec<_>>()
    );
    assert!(
        serials(events, "reported").is_subset(&completed),
        "a report event for an unjournaled install"
    );
    assert_eq!(
        serials(events, "installed"),
        completed,
        "an `installed` event is printed exactly for what was journaled"
    );
    let attached = events
        .iter()
        .filter(|e| e["event"] == "step" && e["step"] == "connect")
        .count();
    assert!(
        attached <= completed.len() + 1,
        "{attached} targets attached for {} journaled: the station went on after the failure",
        completed.len()
    );
    (completed, registered_before, reason.to_owned())
}

#[test]
fn station_journal_on_a_full_filesystem_stops_the_station_and_nothing_unjournaled_is_reported() {
    let factory = Factory::embedded(30);
    let tiny = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let journal = factory.state_dir.path().join(JOURNAL_FILE);
    std::os::unix::fs::symlink(tiny.path().join(JOURNAL_FILE), &journal).unwrap();

    let inner = factory.station_command(1, &["--lease-size", "10"]);
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-rm", "sh", "-c", WRAPPER])
        .arg(tiny.path())
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("OUT", out.path());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    let mut station = factory.spawn_station_command(wrapped);
    let events = events_of(&mut station);
    let status = station.wait(Duration::from_secs(180));
    assert_ne!(
        status.code(),
        Some(97),
        "tmpfs cannot be mounted in a user namespace here"
    );

    let full_journal = out.path().join(JOURNAL_FILE);
    let (completed, registered_before, reason) =
        stopped_with_nothing_unjournaled(&events, &factory, &full_journal, "No space left");
    assert!(
        !completed.is_empty(),
        "the journal filled before any install"
    );
    eprintln!(
        "disk full: {} installs journaled in 4 KiB, {} registered, then: {reason}",
        completed.len(),
        registered_before.len()
    );

    // Room again: the journal back on a roomy disk. Two more runs, each making one device.
    std::fs::remove_file(&journal).unwrap();
    std::fs::copy(&full_journal, &journal).unwrap();
    for _ in 0..2 {
        let mut station = factory.spawn_station(1, &["--lease-size", "10", "--max-devices", "1"]);
        let events = events_of(&mut station);
        let status = station.wait(Duration::from_secs(120));
        assert!(
            status.success(),
            "a run after the disk-full stop failed: {events:?}"
        );
    }
    let (completed_after, reported_after) = journaled(&journal);
    assert!(
        completed.is_subset(&completed_after),
        "journaled installs lost"
    );
    assert_eq!(completed_after.len(), completed.len() + 2);
    assert_eq!(
        registered(&factory),
        completed_after,
        "registry and journal agree"
    );
    assert_eq!(reported_after, completed_after, "everything re-sent");
    // One slot per certificate: a board certified but not journaled when the disk filled
    // keeps its slot (it goes to rework with the same certificate).
    let status = factory.order_status();
    assert_eq!(status.consumed, factory.certified().len() as u64);
    assert!(status.consumed >= completed_after.len() as u64);
}
