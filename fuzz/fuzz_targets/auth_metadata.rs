#![no_main]
//! Auth metadata as the coordinator reads it from any caller: the operator's bearer token and
//! the four signed-station headers (id, timestamp, nonce, signature), parsed before any key is
//! looked up. Input: `name:value` lines.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flashgate_coordinator::access::EnrolmentTokens;
use flashgate_coordinator::audit::AuditLog;
use flashgate_coordinator::keys::{Kek, KekRing};
use flashgate_coordinator::provisioning::station_auth::StationAuth;
use flashgate_coordinator::provisioning::stations::Stations;
use flashgate_coordinator::repository::Db;
use flashgate_coordinator::store::embedded::EmbeddedStore;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};

struct Rig {
    runtime: tokio::runtime::Runtime,
    auth: StationAuth,
    _dir: tempfile::TempDir,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let dir = flashgate_fuzz::scratch_dir();
        let store = EmbeddedStore::open(dir.path()).expect("an empty store opens");
        let db = Db::new(Arc::new(store));
        let kek = Arc::new(KekRing::new(Kek::generate(), vec![]));
        let audit = AuditLog::new(db.clone(), kek);
        // Without the mTLS requirement the headers are parsed and checked whatever the
        // connection: the parsing is what is fuzzed.
        let auth = StationAuth::new(
            db.clone(),
            Stations::new(db.clone(), audit.clone()),
            EnrolmentTokens::new(db, audit),
            Duration::from_secs(300),
            false,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime starts");
        Rig {
            runtime,
            auth,
            _dir: dir,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut request = tonic::Request::new(());
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(&line[..colon]),
            AsciiMetadataValue::try_from(&line[colon + 1..]),
        ) else {
            continue;
        };
        request.metadata_mut().append(key, value);
    }
    let _ = flashgate_proto::operator_auth::bearer_token(request.metadata());
    let rig = rig();
    let _ = rig.runtime.block_on(
        rig.auth
            .authenticate(&request, "/flashgate.v1.StationService/AcquireLease"),
    );
});
