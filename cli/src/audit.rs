//! `flashgate audit list|verify`: the coordinator's tamper-evident log of every change of quota
//! or trust. `verify` checks every chain (keyed MACs, order, heads) and exits non-zero when an
//! entry was edited, removed or reordered in the store.

use clap::Subcommand;
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::{Exit, Failure};
use crate::output::{cell, Printer, TableRow, ToJson};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Entries in chain order (every chain, or one: `global`, `order/ID`, `lease/ID`).
    List {
        #[arg(long, default_value = "")]
        scope: String,
        /// Only the newest N of each chain (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Check the whole log; exit status 1 and one line per problem when it was tampered with.
    Verify,
}

pub async fn run(cmd: AuditCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut access = clients.access();
    match cmd {
        AuditCmd::List { scope, limit } => {
            let list = access
                .list_audit_entries(v1::ListAuditEntriesRequest { scope, limit })
                .await?
                .into_inner();
            out.list(&list.entries);
        }
        AuditCmd::Verify => {
            let report = access
                .verify_audit(v1::VerifyAuditRequest {})
                .await?
                .into_inner();
            let summary = json!({"ok": report.ok, "entries": report.entries,
                "chains": report.chains, "problems": report.problems});
            if !report.ok {
                return Err(Failure::new(
                    Exit::Other,
                    format_args!(
                        "the audit log does NOT verify ({} entries in {} chains):\n  {}",
                        report.entries,
                        report.chains,
                        report.problems.join("\n  ")
                    ),
                ));
            }
            out.done(
                &summary,
                format_args!(
                    "audit log intact: {} entries in {} chains",
                    report.entries, report.chains
                ),
            );
        }
    }
    Ok(())
}

impl ToJson for v1::AuditEntry {
    fn json(&self) -> Value {
        json!({"scope": self.scope, "seq": self.seq, "at_ms": self.at_ms, "actor": self.actor,
            "action": self.action, "subject": self.subject, "detail": self.detail})
    }
}

impl TableRow for v1::AuditEntry {
    const COLUMNS: &'static [&'static str] =
        &["SCOPE", "SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.scope.clone(),
            self.seq.to_string(),
            cell::time(self.at_ms),
            self.actor.clone(),
            self.action.clone(),
            self.subject.clone(),
            self.detail.clone(),
        ]
    }
}
