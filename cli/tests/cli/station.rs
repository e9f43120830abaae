//! `flashgate station list|approve|revoke`, with a station that enrolled itself over gRPC.

use crate::support::{table_rows, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_stations_are_approved_and_revoked() {
    let w = World::start().await;
    let station = w.enrol_station("line 7").await;
    let id = station.station_id();

    let pending = w.cli.json(&["station", "list", "--pending"]).await;
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["station_id"], id);
    assert_eq!(pending[0]["state"], "pending");
    assert_eq!(pending[0]["name"], "line 7");
    assert_eq!(pending[0]["factory"], "factory-1");

    let approved = w.cli.json(&["station", "approve", id]).await;
    assert_eq!(approved["state"], "approved");
    assert!(approved["approved_at_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        w.cli.json(&["station", "list", "--pending"]).await,
        serde_json::json!([])
    );
    let (header, rows) = table_rows(&w.cli.table(&["station", "list"]).await);
    assert_eq!(header, "FINGERPRINT, NAME, FACTORY, STATE, ENROLLED");
    assert_eq!(rows[0][..4], [id, "line 7", "factory-1", "approved"]);

    let said = w.cli.table(&["station", "revoke", id]).await;
    assert_eq!(said, format!("station {id} revoked\n"));
    assert_eq!(
        w.cli.json(&["station", "list"]).await[0]["state"],
        "revoked"
    );
    let said = w.cli.table(&["station", "approve", id]).await;
    assert_eq!(said, format!("station {id} (line 7) approved\n"));

    let unknown = "00".repeat(16);
    w.cli.fails(&["station", "approve", &unknown], 4).await;
    w.tc.stop().await;
}
