#![no_main]
//! The coordinator's embedded store opening its log (replay, torn-tail cut, compaction): any
//! bytes on disk. A log that opens must reopen to the same contents (compaction loses nothing).
use flashgate_coordinator::store::embedded::EmbeddedStore;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = flashgate_fuzz::scratch_dir();
    std::fs::write(dir.path().join("flashgate.log"), data)
        .expect("the scratch directory is writable");
    if EmbeddedStore::open(dir.path()).is_ok() {
        let compacted = std::fs::read(dir.path().join("flashgate.log")).expect("the log is there");
        EmbeddedStore::open(dir.path()).expect("a compacted log reopens");
        let again = std::fs::read(dir.path().join("flashgate.log")).expect("the log is there");
        assert_eq!(compacted, again, "compacting a compacted log changes it");
    }
});
