//! `flashgate release upload|list`.

use ed25519_dalek::SigningKey;
use flashgate_protocol::image::{sign_image, ImageKind};
use rand_core::OsRng;

use crate::support::{table_rows, World, PRODUCT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_images_are_uploaded_and_forged_ones_refused() {
    let w = World::start().await;
    w.product().await;
    let bootloader = w.release(ImageKind::Bootloader, 1).await;
    assert_eq!(bootloader["kind"], "bootloader");
    assert_eq!(bootloader["product_id"], PRODUCT);
    assert_eq!(bootloader["version"], 1);
    let digest = bootloader["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest.len(), 64);

    let os = w.image(ImageKind::Os, 3);
    let said = w
        .cli
        .table(&["release", "upload", os.to_str().unwrap()])
        .await;
    assert!(said.starts_with("release "), "{said}");
    assert!(
        said.ends_with(" uploaded: product 7 os version 3\n"),
        "{said}"
    );

    let listed = w.cli.json(&["release", "list", "--product", "7"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["digest"] == digest.as_str()));
    assert_eq!(
        w.cli.json(&["release", "list", "--product", "99"]).await,
        serde_json::json!([])
    );
    let (header, rows) = table_rows(&w.cli.table(&["release", "list"]).await);
    assert_eq!(header, "DIGEST, PRODUCT, KIND, VERSION, SIZE");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r[0] == digest && r[2] == "bootloader"));

    // Signed by someone else: refused as invalid (7), nothing stored.
    let stranger = SigningKey::generate(&mut OsRng);
    let forged = w.cli.file(
        "forged.img",
        sign_image(ImageKind::Os, PRODUCT, 4, 0, b"not the vendor's", &stranger),
    );
    w.cli
        .fails(&["release", "upload", forged.to_str().unwrap()], 7)
        .await;
    assert_eq!(
        w.cli
            .json(&["release", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A missing file: usage (2).
    let message = w
        .cli
        .fails(&["release", "upload", "/nonexistent.img"], 2)
        .await;
    assert!(
        message.contains("cannot read /nonexistent.img"),
        "{message}"
    );
    w.tc.stop().await;
}
