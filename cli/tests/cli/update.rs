//! `flashgate update publish|status` (the device side, `device update`, needs a board: see
//! tests/e2e/update.rs).

use flashgate_protocol::image::ImageKind;

use crate::support::{table_rows, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_published_and_followed() {
    let w = World::start().await;
    let (a, b) = ([0xa1; 16], [0xb2; 16]);
    let (order, _) = w.fleet(&[a, b]).await;
    let os = w.release(ImageKind::Os, 2).await;
    let digest = os["digest"].as_str().unwrap();

    let published = w
        .cli
        .json(&[
            "update",
            "publish",
            "--release",
            digest,
            "--serial",
            &hex::encode(a),
        ])
        .await;
    assert_eq!(
        (&published["devices"], &published["version"]),
        (&1.into(), &2.into())
    );
    let campaign = published["campaign_id"].as_str().unwrap().to_owned();
    assert!(!campaign.is_empty());

    let status = w.cli.json(&["update", "status", "--order", &order]).await;
    let targeted: Vec<&serde_json::Value> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["campaign_id"] == campaign.as_str())
        .collect();
    assert_eq!(targeted.len(), 1);
    assert_eq!(targeted[0]["serial"], hex::encode(a).as_str());
    assert_eq!(targeted[0]["target_version"], 2);
    let only = w
        .cli
        .json(&["update", "status", "--campaign", &campaign])
        .await;
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");

    // A rollout to the whole order, table output.
    let said = w
        .cli
        .table(&["update", "publish", "--release", digest, "--order", &order])
        .await;
    assert!(
        said.ends_with(" published: version 2 to 2 device(s)\n"),
        "{said}"
    );
    let (header, rows) = table_rows(&w.cli.table(&["update", "status", "--product", "7"]).await);
    assert_eq!(
        header,
        "SERIAL, PRODUCT, CAMPAIGN, TARGET, STATE, OS, LAST SEEN"
    );
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[3] == "2"), "{rows:?}");

    // A serial that is not 32 hex characters: usage (2), nothing published.
    let bad = ["update", "publish", "--release", digest, "--serial", "abc"];
    assert!(w.cli.fails(&bad, 2).await.contains("--serial \"abc\""));
    w.tc.stop().await;
}
