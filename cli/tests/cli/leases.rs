//! `flashgate leases list`.

use crate::support::{table_rows, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_listed_with_their_use() {
    let w = World::start().await;
    let (order, lease) = w.fleet(&[[0x11; 16]]).await;
    let listed = w.cli.json(&["leases", "list", "--order", &order]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["lease_id"], lease.as_str());
    assert_eq!(
        (&listed[0]["count"], &listed[0]["used"]),
        (&2.into(), &1.into())
    );
    assert_eq!(listed[0]["state"], "active");
    let station = listed[0]["station_id"].as_str().unwrap().to_owned();
    assert!(listed[0]["not_after_ms"].as_i64() > listed[0]["issued_at_ms"].as_i64());

    let (header, rows) = table_rows(
        &w.cli
            .table(&["leases", "list", "--station", &station])
            .await,
    );
    assert_eq!(
        header,
        "LEASE, ORDER, STATION, COUNT, USED, STATE, NOT AFTER"
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][..6],
        [
            lease.as_str(),
            order.as_str(),
            station.as_str(),
            "2",
            "1",
            "active"
        ]
    );
    assert_eq!(
        w.cli.json(&["leases", "list", "--order", "other"]).await,
        serde_json::json!([])
    );
    w.tc.stop().await;
}
