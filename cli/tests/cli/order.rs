//! `flashgate order create` and `flashgate orders status [--watch]`.

use flashgate_protocol::image::ImageKind;

use crate::support::{code, stdout, table_rows, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_created_and_their_status_followed() {
    let w = World::start().await;
    let (station, order) = w.order(5).await;
    assert_eq!(order, "order-1");
    let status = w.cli.json(&["orders", "status", &order]).await;
    assert_eq!(status[0]["order"]["count"], 5);
    assert_eq!(
        status[0]["order"]["station_ids"],
        serde_json::json!([station.station_id()])
    );
    assert_eq!(status[0]["remaining"], 5);

    // A second order, generated id, table output.
    let releases = w.cli.json(&["release", "list"]).await;
    let bootloader = releases[0]["digest"].as_str().unwrap();
    let said = w
        .cli
        .table(&[
            "order",
            "create",
            "--product",
            "7",
            "--bootloader",
            bootloader,
            "--factory",
            "factory-1",
            "--count",
            "3",
        ])
        .await;
    assert!(
        said.starts_with("order ") && said.ends_with(" created: 3 devices of product 7\n"),
        "{said}"
    );

    // Slots move to a lease: reserved, not consumed.
    w.acquire(&station, &order, 2).await;
    let (header, rows) = table_rows(&w.cli.table(&["orders", "status"]).await);
    assert_eq!(
        header,
        "ORDER, PRODUCT, COUNT, CONSUMED, FAILED, RESERVED, REMAINING, LEASES"
    );
    assert_eq!(rows.len(), 2);
    let first = rows.iter().find(|r| r[0] == "order-1").unwrap();
    assert_eq!(first[2..], ["5", "0", "0", "2", "3", "1"]);

    // --watch in a table: a banner per refresh, refreshes apart.
    let watched = w
        .cli
        .run(&[
            "orders",
            "status",
            &order,
            "--watch",
            "--interval",
            "1",
            "--watch-count",
            "2",
        ])
        .await;
    assert_eq!(code(&watched), 0);
    let text = stdout(&watched);
    assert_eq!(
        text.matches("every 1s: flashgate orders status").count(),
        2,
        "{text}"
    );

    // Bad input: usage (2) before anything is sent; unknown order: 4; unknown product: refused.
    let bad = [
        "order",
        "create",
        "--product",
        "7",
        "--bootloader",
        "xyz",
        "--count",
        "1",
    ];
    assert!(w
        .cli
        .fails(&bad, 2)
        .await
        .contains("--bootloader must be hex"));
    w.cli.fails(&["orders", "status", "no-such-order"], 4).await;
    let unknown = [
        "order",
        "create",
        "--product",
        "99",
        "--bootloader",
        bootloader,
        "--count",
        "1",
    ];
    let out = w.cli.run(&unknown).await;
    assert!(
        [4, 7].contains(&code(&out)),
        "{}",
        crate::support::stderr(&out)
    );
    // --interval needs --watch.
    w.cli
        .fails(&["orders", "status", "--interval", "3"], 2)
        .await;
    w.tc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_names_the_os_its_boards_leave_with() {
    let w = World::start().await;
    w.product().await;
    let bootloader = w.release(ImageKind::Bootloader, 1).await;
    let os = w.release(ImageKind::Os, 2).await;
    let (bootloader, os) = (
        bootloader["digest"].as_str().unwrap().to_owned(),
        os["digest"].as_str().unwrap().to_owned(),
    );
    let (bootloader, os) = (bootloader.as_str(), os.as_str());
    let create = |os| {
        [
            "order",
            "create",
            "--product",
            "7",
            "--bootloader",
            bootloader,
            "--os",
            os,
            "--factory",
            "factory-1",
            "--count",
            "2",
        ]
    };
    let said = w.cli.run(&create(os)).await;
    assert_eq!(code(&said), 0, "{}", crate::support::stderr(&said));
    assert!(
        stdout(&said).ends_with(" created: 2 devices of product 7, leaving with OS version 2\n"),
        "{}",
        stdout(&said)
    );
    let status = w.cli.json(&["orders", "status"]).await;
    assert_eq!(status[0]["order"]["os_release_digest"], os);
    assert_eq!(status[0]["order"]["os_version"], 2);
    // Only an OS release of the product: a bootloader is refused, nothing created.
    let refused = w.cli.run(&create(bootloader)).await;
    assert_ne!(code(&refused), 0);
    assert!(
        crate::support::stderr(&refused).contains("is not an OS of product 7"),
        "{}",
        crate::support::stderr(&refused)
    );
    let bad: Vec<&str> = [
        "order",
        "create",
        "--product",
        "7",
        "--bootloader",
        bootloader,
    ]
    .into_iter()
    .chain(["--os", "zz", "--count", "1"])
    .collect();
    assert!(w.cli.fails(&bad, 2).await.contains("--os must be hex"));
    assert_eq!(
        w.cli
            .json(&["orders", "status"])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    w.tc.stop().await;
}
