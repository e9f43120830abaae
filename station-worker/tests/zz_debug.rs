mod support;
use std::{sync::Arc, time::Duration};
use flashgate_station::probe::{GdbProbe, GdbProbeOptions, TrafficRecorder};
#[test]
fn dbg() {
    for _ in 0..20 {
        let q = support::qemu::BareQemu::start();
        let rec = TrafficRecorder::new();
        let r = GdbProbe::connect_with(q.gdb, GdbProbeOptions { timeout: Duration::from_secs(5), tap: Some(Arc::new(rec.clone())) });
        if let Err(e) = r {
            for (d, c) in rec.chunks() { eprintln!("{d:?} {:?}", String::from_utf8_lossy(&c)); }
            panic!("{e}");
        }
    }
}
