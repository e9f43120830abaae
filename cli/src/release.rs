//! `flashgate release upload|list`: vendor-signed images (bootloader, OS, apps, test app).

use std::path::PathBuf;

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum ReleaseCmd {
    /// Upload a signed image (header + body); refused if the vendor signature is bad.
    Upload { file: PathBuf },
    List {
        #[arg(long, default_value_t = 0)]
        product: u32,
    },
}

pub async fn run(cmd: ReleaseCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut operator = clients.operator();
    match cmd {
        ReleaseCmd::Upload { file } => {
            let image = std::fs::read(&file)
                .map_err(|e| Failure::usage(format_args!("cannot read {}: {e}", file.display())))?;
            let r = operator
                .upload_release(v1::UploadReleaseRequest { image })
                .await?
                .into_inner();
            out.done(
                &r,
                format_args!(
                    "release {} uploaded: product {} {} version {}",
                    hex::encode(&r.digest),
                    r.product_id,
                    image_kind(r.kind),
                    r.version
                ),
            );
        }
        ReleaseCmd::List { product } => {
            let list = operator
                .list_releases(v1::ListReleasesRequest {
                    product_id: product,
                })
                .await?
                .into_inner();
            out.list(&list.releases);
        }
    }
    Ok(())
}

fn image_kind(kind: i32) -> &'static str {
    match v1::ImageKind::try_from(kind) {
        Ok(v1::ImageKind::Bootloader) => "bootloader",
        Ok(v1::ImageKind::Os) => "os",
        Ok(v1::ImageKind::App) => "app",
        Ok(v1::ImageKind::TestApp) => "test-app",
        _ => "unknown",
    }
}

impl ToJson for v1::Release {
    fn json(&self) -> Value {
        json!({"digest": hex::encode(&self.digest), "product_id": self.product_id, "kind": image_kind(self.kind),
            "version": self.version, "load_address": self.load_address, "body_size": self.body_size,
            "body_digest": hex::encode(&self.body_digest), "uploaded_at_ms": self.uploaded_at_ms})
    }
}

impl TableRow for v1::Release {
    const COLUMNS: &'static [&'static str] = &["DIGEST", "PRODUCT", "KIND", "VERSION", "SIZE"];
    fn cells(&self) -> Vec<String> {
        vec![
            hex::encode(&self.digest),
            self.product_id.to_string(),
            image_kind(self.kind).into(),
            self.version.to_string(),
            self.body_size.to_string(),
        ]
    }
}
