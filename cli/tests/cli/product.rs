//! `flashgate product create|list|rotate-authority`.

use crate::support::{table_rows, World, PRODUCT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_created_and_listed_as_table_and_json() {
    let w = World::start().await;
    let key = w.vendor_key_hex();
    let created = w.product().await;
    assert_eq!(created["product_id"], PRODUCT);
    assert_eq!(created["name"], "board");
    assert_eq!(created["vendor_public_key"], key.as_str());
    assert!(created["created_at_ms"].as_i64().unwrap() > 0);

    // From a key file (trailing newline allowed), table output: one sentence.
    let file = w.cli.file("vendor.pub", format!("{key}\n"));
    let said = w
        .cli
        .table(&[
            "product",
            "create",
            "--id",
            "8",
            "--name",
            "second board",
            "--vendor-key-file",
            file.to_str().unwrap(),
        ])
        .await;
    let authority = said
        .strip_prefix("product 8 (second board) created; authority key ")
        .and_then(|rest| rest.split(' ').next())
        .expect("the authority key is printed")
        .to_owned();
    assert_eq!(authority.len(), 64, "{said}");

    let listed = w.cli.json(&["product", "list"]).await;
    let ids: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [7, 8]);
    let (header, rows) = table_rows(&w.cli.table(&["product", "list"]).await);
    assert_eq!(header, "PRODUCT, NAME, VENDOR KEY, AUTHORITY KEY");
    assert_eq!(
        rows[1],
        ["8", "second board", key.as_str(), authority.as_str()]
    );

    // Rotation: a new current key, the old one kept in the list.
    let rotated = w.cli.json(&["product", "rotate-authority", "8"]).await;
    let current = rotated["authority_public_key"].as_str().unwrap();
    assert_ne!(current, authority);
    assert_eq!(
        rotated["authority_public_keys"],
        serde_json::json!([authority, current])
    );

    // Exit codes: exists 6; bad key 2 (nothing sent); no key 2; no token 5.
    let again = [
        "product",
        "create",
        "--id",
        "7",
        "--name",
        "x",
        "--vendor-key",
        &key,
    ];
    assert!(w.cli.fails(&again, 6).await.contains("AlreadyExists"));
    let short = [
        "product",
        "create",
        "--id",
        "9",
        "--name",
        "x",
        "--vendor-key",
        "abcd",
    ];
    assert!(w.cli.fails(&short, 2).await.contains("64 hex chars"));
    let none = ["product", "create", "--id", "9", "--name", "x"];
    assert!(w.cli.fails(&none, 2).await.contains("--vendor-key-file"));
    let anonymous = w.cli.run_anonymous(&["product", "list"]).await;
    assert_eq!(crate::support::code(&anonymous), 5);
    w.tc.stop().await;
}
