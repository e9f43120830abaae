//! `flashgate operator create|list|revoke`: one credential per person or system, each with a
//! role (admin, orders, release, field, viewer). The token is shown once (or written to
//! `--out FILE`, mode 0600); the coordinator keeps only its hash.

use std::path::PathBuf;

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{cell, Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Make a credential: `create NAME --role R [--out FILE]`.
    Create {
        name: String,
        /// admin, orders, release, field or viewer.
        #[arg(long)]
        role: String,
        /// Write the token to this new file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every credential (revoked ones too), never their tokens.
    List,
    /// Revoke a credential: its token stops working at once.
    Revoke { name: String },
}

fn role(name: &str) -> Result<v1::OperatorRole, Failure> {
    Ok(match name {
        "admin" => v1::OperatorRole::Admin,
        "orders" => v1::OperatorRole::Orders,
        "release" => v1::OperatorRole::Release,
        "field" => v1::OperatorRole::Field,
        "viewer" => v1::OperatorRole::Viewer,
        other => {
            return Err(Failure::usage(format_args!(
                "--role {other:?}: one of admin, orders, release, field, viewer"
            )))
        }
    })
}

fn role_name(role: i32) -> &'static str {
    match v1::OperatorRole::try_from(role) {
        Ok(v1::OperatorRole::Admin) => "admin",
        Ok(v1::OperatorRole::Orders) => "orders",
        Ok(v1::OperatorRole::Release) => "release",
        Ok(v1::OperatorRole::Field) => "field",
        Ok(v1::OperatorRole::Viewer) => "viewer",
        _ => "unknown",
    }
}

/// Writes a secret to a new file only its owner can read.
pub fn write_secret(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            Failure::usage(format_args!(
                "cannot create {} (it must not exist yet): {e}",
                path.display()
            ))
        })
}

pub async fn run(cmd: OperatorCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut access = clients.access();
    match cmd {
        OperatorCmd::Create {
            name,
            role: r,
            out: file,
        } => {
            let role = role(&r)?;
            if let Some(path) = &file {
                if path.exists() {
                    return Err(Failure::usage(format_args!(
                        "{} exists already: pick a new file for the token",
                        path.display()
                    )));
                }
            }
            let made = access
                .create_operator(v1::CreateOperatorRequest {
                    name,
                    role: role as i32,
                })
                .await?
                .into_inner();
            let operator = made.operator.unwrap_or_default();
            match &file {
                Some(path) => {
                    write_secret(path, &format!("{}\n", made.token))?;
                    out.done(
                        &operator,
                        format_args!(
                            "operator {} ({}) created; token written to {}",
                            operator.name,
                            role_name(operator.role),
                            path.display()
                        ),
                    );
                }
                None => out.done(
                    &json!({"operator": operator.json(), "token": made.token}),
                    format_args!(
                        "operator {} ({}) created; its token (shown once):\n{}",
                        operator.name,
                        role_name(operator.role),
                        made.token
                    ),
                ),
            }
        }
        OperatorCmd::List => {
            let list = access
                .list_operators(v1::ListOperatorsRequest {})
                .await?
                .into_inner();
            out.list(&list.operators);
        }
        OperatorCmd::Revoke { name } => {
            let o = access
                .revoke_operator(v1::RevokeOperatorRequest { name })
                .await?
                .into_inner();
            out.done(&o, format_args!("operator {} revoked", o.name));
        }
    }
    Ok(())
}

impl ToJson for v1::Operator {
    fn json(&self) -> Value {
        json!({"name": self.name, "role": role_name(self.role), "created_at_ms": self.created_at_ms,
            "created_by": self.created_by, "revoked_at_ms": self.revoked_at_ms})
    }
}

impl TableRow for v1::Operator {
    const COLUMNS: &'static [&'static str] = &["NAME", "ROLE", "CREATED", "BY", "REVOKED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            role_name(self.role).into(),
            cell::time(self.created_at_ms),
            self.created_by.clone(),
            if self.revoked_at_ms == 0 {
                "-".into()
            } else {
                cell::time(self.revoked_at_ms)
            },
        ]
    }
}
