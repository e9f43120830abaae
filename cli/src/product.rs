//! `flashgate product create|list|rotate-authority`: the kinds of board, each with its vendor's
//! public key and the coordinator's authority key that certifies its devices (bootloader and
//! OS images pin both: `flashgate image sign --vendor-pub … --authority-pub …`).

use std::path::PathBuf;

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{Printer, TableRow, ToJson};
use crate::parse::hex32;

#[derive(Subcommand)]
pub enum ProductCmd {
    /// Create a product with its vendor's ed25519 public key.
    Create {
        #[arg(long)]
        id: u32,
        #[arg(long)]
        name: String,
        /// Vendor public key, 64 hex chars.
        #[arg(long, conflicts_with = "vendor_key_file")]
        vendor_key: Option<String>,
        /// File holding the vendor public key (64 hex chars).
        #[arg(long)]
        vendor_key_file: Option<PathBuf>,
    },
    List,
    /// Make a new authority key for a product: new device certificates are signed with it, so
    /// bootloader and OS releases must be signed again pinning it (devices already made keep
    /// the key their bootloader pins).
    RotateAuthority {
        /// The product.
        id: u32,
    },
}

pub async fn run(cmd: ProductCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut operator = clients.operator();
    match cmd {
        ProductCmd::Create {
            id,
            name,
            vendor_key,
            vendor_key_file,
        } => {
            let text = match (vendor_key, vendor_key_file) {
                (Some(key), _) => key,
                (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
                    Failure::usage(format_args!("cannot read {}: {e}", path.display()))
                })?,
                (None, None) => {
                    return Err(Failure::usage(
                        "give the vendor key with --vendor-key HEX or --vendor-key-file FILE",
                    ))
                }
            };
            let p = operator
                .create_product(v1::CreateProductRequest {
                    product_id: id,
                    name,
                    vendor_public_key: hex32(&text, "the vendor key")?,
                })
                .await?
                .into_inner();
            out.done(
                &p,
                format_args!(
                    "product {} ({}) created; authority key {} (pin it with `flashgate image sign --authority-pub`)",
                    p.product_id,
                    p.name,
                    hex::encode(&p.authority_public_key)
                ),
            );
        }
        ProductCmd::RotateAuthority { id } => {
            let p = operator
                .rotate_authority_key(v1::RotateAuthorityKeyRequest { product_id: id })
                .await?
                .into_inner();
            out.done(
                &p,
                format_args!(
                    "product {}: new authority key {}; sign new bootloader and OS releases pinning it",
                    p.product_id,
                    hex::encode(&p.authority_public_key)
                ),
            );
        }
        ProductCmd::List => {
            let list = operator
                .list_products(v1::ListProductsRequest {})
                .await?
                .into_inner();
            out.list(&list.products);
        }
    }
    Ok(())
}

impl ToJson for v1::Product {
    fn json(&self) -> Value {
        json!({"product_id": self.product_id, "name": self.name,
            "vendor_public_key": hex::encode(&self.vendor_public_key),
            "authority_public_key": hex::encode(&self.authority_public_key),
            "authority_public_keys": self.authority_public_keys.iter().map(hex::encode).collect::<Vec<_>>(),
            "created_at_ms": self.created_at_ms})
    }
}

impl TableRow for v1::Product {
    const COLUMNS: &'static [&'static str] = &["PRODUCT", "NAME", "VENDOR KEY", "AUTHORITY KEY"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.product_id.to_string(),
            self.name.clone(),
            hex::encode(&self.vendor_public_key),
            hex::encode(&self.authority_public_key),
        ]
    }
}
