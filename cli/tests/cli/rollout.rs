//! `flashgate update rollout|pause|resume|list|status ROLLOUT` as a process against a real
//! coordinator; the devices' receipts are made with their device keys
//! (`TestCoordinator::confirm_update`) and sent over gRPC, as a field tool relays them.

use flashgate_proto::v1::{self, update_service_client::UpdateServiceClient};
use flashgate_protocol::image::ImageKind;

use crate::support::{table_rows, World, PRODUCT};

/// Four registered devices (keys known to the test) and an OS v2 release; its digest.
async fn fleet(w: &World) -> (Vec<([u8; 16], [u8; 32])>, String) {
    w.product().await;
    let devices: Vec<([u8; 16], [u8; 32])> = (1..=4u8).map(|i| ([i; 16], [0x40 + i; 32])).collect();
    for (serial, key) in &devices {
        w.tc.register_device(PRODUCT, serial, key).await.unwrap();
    }
    let os = w.release(ImageKind::Os, 2).await;
    (devices, os["digest"].as_str().unwrap().to_owned())
}

/// The device fetches its package and sends a receipt showing v2 running, confirmed.
async fn confirm(w: &World, serial: [u8; 16], key: [u8; 32]) {
    w.tc.confirm_update(PRODUCT, serial, &key).await.unwrap();
}

/// Asks for the package of `serial`.
async fn package(w: &World, serial: &[u8; 16]) -> Result<v1::UpdatePackage, tonic::Status> {
    UpdateServiceClient::new(w.tc.channel().await.unwrap())
        .get_update_package(w.tc.operator_request(v1::GetUpdatePackageRequest {
            product_id: PRODUCT,
            serial: serial.to_vec(),
        }))
        .await
        .map(|r| r.into_inner())
}

/// `update rollout --release DIGEST --all --waves WAVES --failure-threshold THRESHOLD`.
fn rollout<'a>(digest: &'a str, waves: &'a str, threshold: &'a str) -> [&'a str; 9] {
    [
        "update",
        "rollout",
        "--release",
        digest,
        "--all",
        "--waves",
        waves,
        "--failure-threshold",
        threshold,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_started_paused_resumed_and_followed() {
    let w = World::start().await;
    let (devices, digest) = fleet(&w).await;

    // Bad plans: clear errors, and nothing is targeted.
    let said = w
        .cli
        .fails(&rollout(&digest, "10%,50%,100%", "101%"), 7)
        .await;
    assert!(
        said.contains("the failure threshold 101% is above 100%"),
        "{said}"
    );
    let said = w
        .cli
        .fails(&rollout(&digest, "40%,10%,100%", "10%"), 7)
        .await;
    assert!(
        said.contains(
            "waves are cumulative and must increase: wave 2 (10%) is not above wave 1 (40%)"
        ),
        "{said}"
    );
    let said = w.cli.fails(&rollout(&digest, "1,2", "1"), 7).await;
    assert!(
        said.contains("leaves 2 of the 4 targets out: end with 100% or 4"),
        "{said}"
    );
    let said = w.cli.fails(&rollout(&digest, "ten,100%", "1"), 2).await;
    assert!(
        said.contains("--waves \"ten\" must be a percentage (10%) or a count (3)"),
        "{said}"
    );
    // Groups are orders: every test device is under order "test".
    let mut grouped = rollout(&digest, "50%,100%", "1").to_vec();
    grouped.extend(["--group", "test"]);
    let said = w.cli.fails(&grouped, 7).await;
    assert!(said.contains("the groups hold every target"), "{said}");
    grouped.truncate(grouped.len() - 1);
    grouped.push("nope");
    let said = w.cli.fails(&grouped, 7).await;
    assert!(said.contains("group nope: no targeted device"), "{said}");
    let untouched = w.cli.json(&["update", "status", "--product", "7"]).await;
    assert_eq!(
        untouched,
        serde_json::json!([]),
        "a refused rollout targeted devices"
    );

    // Unknown rollouts: not found (4), for every command.
    for cmd in ["status", "pause", "resume"] {
        let said = w.cli.fails(&["update", cmd, "upd-000000"], 4).await;
        assert!(said.contains("no rollout upd-000000"), "{cmd}: {said}");
    }

    // A rollout in two waves (1 device, then the other 3), table output.
    let started = w.cli.json(&rollout(&digest, "1,4", "0")).await;
    let id = started["rollout_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&started["state"], &started["open_waves"]),
        (&"running".into(), &1.into())
    );
    let table = w.cli.table(&["update", "status", &id]).await;
    let (headline, rest) = table.split_once('\n').unwrap();
    assert_eq!(
        headline,
        format!(
            "rollout {id}: version 2, running; 1 of 2 waves open; failure threshold 0 failures"
        )
    );
    let (header, rows) = table_rows(rest);
    assert_eq!(
        header,
        "WAVE, REACHES, OPEN, TARGETED, CONFIRMED, FAILED, PENDING"
    );
    assert_eq!(rows[0], ["1", "first 1", "yes", "1", "0", "0", "1"]);
    assert_eq!(rows[1], ["2", "first 4", "no", "3", "0", "0", "3"]);

    // Only the wave-1 device gets its package.
    let mut first = None;
    for (serial, key) in &devices {
        match package(&w, serial).await {
            Ok(_) => first = Some((*serial, *key)),
            Err(status) => {
                assert!(
                    status.message().contains("not yet in an open wave"),
                    "{status:?}"
                )
            }
        }
    }
    let (serial, key) = first.expect("one device is in wave 1");

    // Paused by the operator: not even that device gets a package until resumed.
    let paused = w.cli.table(&["update", "pause", &id]).await;
    assert!(
        paused.contains(": version 2, paused (by an operator); 1 of 2 waves open"),
        "{paused}"
    );
    let (header, rows) = table_rows(&w.cli.table(&["update", "list"]).await);
    assert_eq!(
        header,
        "ROLLOUT, PRODUCT, VERSION, STATE, OPEN, CONFIRMED/TARGETED BY WAVE, CREATED, UPDATED"
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..6], [&id, "7", "2", "paused", "1/2", "0/1 0/3"]);
    assert!(rows[0][6].ends_with(" UTC"), "{rows:?}");
    let refused = package(&w, &serial).await.unwrap_err();
    assert!(
        refused.message().contains("is paused (by an operator)"),
        "{refused:?}"
    );
    let resumed = w.cli.json(&["update", "resume", &id]).await;
    assert_eq!(resumed["state"], "running");

    // It confirms: wave 2 opens; the other three confirm: completed.
    confirm(&w, serial, key).await;
    let status = w.cli.json(&["update", "status", &id]).await;
    assert_eq!(
        (&status["open_waves"], &status["waves"][1]["open"]),
        (&2.into(), &true.into())
    );
    for (other, key) in devices.iter().filter(|(s, _)| *s != serial) {
        confirm(&w, *other, *key).await;
    }
    let done = w.cli.table(&["update", "status", &id]).await;
    assert!(
        done.contains(": version 2, completed; 2 of 2 waves open"),
        "{done}"
    );
    let said = w.cli.fails(&["update", "pause", &id], 7).await;
    assert!(said.contains("is completed"), "{said}");
    let listed = w.cli.json(&["update", "list", "--product", "7"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        (&listed[0]["rollout_id"], &listed[0]["state"]),
        (&id.as_str().into(), &"completed".into())
    );
    assert_eq!(listed[0]["waves"][1]["confirmed"], 3);
    assert_eq!(
        w.cli.json(&["update", "list", "--product", "8"]).await,
        serde_json::json!([])
    );
    w.tc.stop().await;
}
