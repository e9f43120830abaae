//! The station's journal with fsync failing: the real `flashgate-station` process runs under an
//! LD_PRELOAD shim (`flashgate_tests::fsync_fault`) that makes the journal's `fdatasync` return
//! EIO after a few successful calls. The station must stop taking targets and say why; nothing
//! may be reported (or printed as installed) that the journal does not hold; and a run without
//! the fault resumes from that journal and re-sends everything in it.

use std::time::Duration;

use flashgate_station::provisioning::journal::JOURNAL_FILE;
use flashgate_tests::fsync_fault;
use flashgate_tests::station_harness::Factory;

use crate::station_disk_full::{
    events_of, journaled, registered, stopped_with_nothing_unjournaled,
};

#[test]
fn station_journal_whose_fsync_fails_stops_the_station_and_nothing_unjournaled_is_reported() {
    let shim_dir = tempfile::tempdir().unwrap();
    let shim = fsync_fault::build_shim(shim_dir.path());
    // The first sync (the lease) fails; one after an install's records; one a few installs on.
    for succeed in [0, 3, 6] {
        fsync_fails_after(&shim, succeed);
    }
}

fn fsync_fails_after(shim: &std::path::Path, succeed: u32) {
    let factory = Factory::embedded(30);
    let mut command = factory.station_command(1, &["--lease-size", "10"]);
    fsync_fault::inject(&mut command, shim, JOURNAL_FILE, succeed);
    let mut station = factory.spawn_station_command(command);
    let events = events_of(&mut station);
    station.wait(Duration::from_secs(180));

    let journal = factory.journal_path();
    // A record whose fsync failed is not in the journal: the station never acted on it, and
    // after EIO the kernel may have dropped its pages, so a later read must not find it.
    let (completed, registered_before, reason) =
        stopped_with_nothing_unjournaled(&events, &factory, &journal, "Input/output error");
    eprintln!(
        "fsync failing after {succeed} syncs: {} installs journaled, {} registered, then: {reason}",
        completed.len(),
        registered_before.len()
    );

    // The fault gone: a run resumes from the journal, re-sends it and makes one more device.
    let mut station = factory.spawn_station(1, &["--lease-size", "10", "--max-devices", "1"]);
    let events = events_of(&mut station);
    assert!(
        station.wait(Duration::from_secs(120)).success(),
        "the run after the fsync failure failed: {events:?}"
    );
    let (completed_after, reported_after) = journaled(&journal);
    assert!(
        completed.is_subset(&completed_after),
        "journaled installs lost"
    );
    assert_eq!(completed_after.len(), completed.len() + 1);
    assert_eq!(
        registered(&factory),
        completed_after,
        "registry and journal agree"
    );
    assert_eq!(reported_after, completed_after, "everything re-sent");
}
