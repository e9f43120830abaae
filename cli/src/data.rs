//! `flashgate data …`: read verified telemetry (`tail`, `query`, `stats`) and forward a
//! device's sealed records from its UART to the coordinator (`relay`).

use std::time::{Duration, Instant};

use clap::Subcommand;
use flashgate_cli::grpc::{Clients, DataClient};
use flashgate_proto::v1;
use flashgate_protocol::uart::host::{HostLink, LinkError, Port};
use serde_json::{json, Value};

use crate::exit::{Exit, Failure};
use crate::output::{Printer, TableRow, ToJson};
use crate::parse;

#[derive(Subcommand)]
pub enum DataCmd {
    /// The newest verified records of one device (oldest first); --follow keeps polling.
    Tail {
        /// Device serial (32 hex characters).
        #[arg(long)]
        serial: String,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing new records (poll every second).
        #[arg(short, long)]
        follow: bool,
    },
    /// Records of one device received in a time range (unix ms).
    Query {
        #[arg(long)]
        serial: String,
        #[command(flatten)]
        window: parse::Window,
    },
    /// Accepted records and refusals by reason since the coordinator started.
    Stats,
    /// Forward sealed records from a device's UART to the coordinator over gRPC. The relay
    /// holds no key: records are verified by the coordinator.
    Relay {
        /// The UART: `tcp:HOST:PORT` (an emulated board's serial port).
        #[arg(long)]
        port: String,
        /// Stop after forwarding this many records (0 = run until the link closes).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Stop after this many seconds (0 = no limit).
        #[arg(long, default_value_t = 0)]
        timeout_secs: u64,
    },
}

pub async fn run(cmd: DataCmd, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let mut client = clients.data();
    match cmd {
        DataCmd::Tail {
            serial,
            lines,
            follow,
        } => {
            let serial = parse::serial(&serial, "--serial")?.to_vec();
            let query = |from_ms: i64, limit: u32| v1::QueryRecordsRequest {
                serial: serial.clone(),
                from_ms,
                to_ms: 0,
                limit,
            };
            let mut records = client
                .query_records(query(0, lines))
                .await?
                .into_inner()
                .records;
            out.stream(&records, true);
            // With --follow: until interrupted (Ctrl-C).
            #[allow(clippy::while_immutable_condition)] // --follow runs until interrupted
            while follow {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let since = records.last().map_or(0, |r| r.received_at_ms);
                let seen: Vec<(u32, u32)> = records.iter().map(|r| (r.epoch, r.counter)).collect();
                let fresh: Vec<v1::DataRecord> = client
                    .query_records(query(since, 0))
                    .await?
                    .into_inner()
                    .records
                    .into_iter()
                    .filter(|r| !seen.contains(&(r.epoch, r.counter)))
                    .collect();
                out.stream(&fresh, false);
                records.extend(fresh);
            }
        }
        DataCmd::Query { serial, window } => {
            let records = client
                .query_records(v1::QueryRecordsRequest {
                    serial: parse::serial(&serial, "--serial")?.to_vec(),
                    from_ms: window.since,
                    to_ms: window.until,
                    limit: window.limit,
                })
                .await?
                .into_inner()
                .records;
            out.list(&records);
        }
        DataCmd::Stats => {
            let stats = client
                .get_ingest_stats(v1::GetIngestStatsRequest {})
                .await?
                .into_inner();
            out.summary(
                &stats,
                format_args!("accepted {}", stats.accepted),
                &stats.rejected,
            );
        }
        DataCmd::Relay {
            port,
            count,
            timeout_secs,
        } => relay(&mut client, &port, count, timeout_secs).await?,
    }
    Ok(())
}

fn kind(k: u32) -> &'static str {
    match k {
        1 => "telemetry",
        2 => "rotation",
        _ => "unknown",
    }
}

fn body_text(r: &v1::DataRecord) -> String {
    if r.kind == 2 && r.body.len() == 4 {
        return format!(
            "new epoch {}",
            u32::from_le_bytes(r.body[..4].try_into().unwrap_or_default())
        );
    }
    match std::str::from_utf8(&r.body) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => hex::encode(&r.body),
    }
}

impl ToJson for v1::DataRecord {
    fn json(&self) -> Value {
        json!({"serial": hex::encode(&self.serial), "product_id": self.product_id, "epoch": self.epoch,
            "counter": self.counter, "kind": kind(self.kind), "body": body_text(self),
            "received_at_ms": self.received_at_ms, "source": self.source, "wire_len": self.wire_len})
    }
}

impl TableRow for v1::DataRecord {
    const COLUMNS: &'static [&'static str] =
        &["RECEIVED", "EPOCH", "COUNTER", "KIND", "BYTES", "BODY"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.received_at_ms.to_string(),
            self.epoch.to_string(),
            self.counter.to_string(),
            kind(self.kind).into(),
            self.wire_len.to_string(),
            body_text(self),
        ]
    }
}

impl ToJson for v1::IngestStats {
    fn json(&self) -> Value {
        let rejected: Vec<Value> = self.rejected.iter().map(ToJson::json).collect();
        json!({"accepted": self.accepted, "rejected": rejected})
    }
}

impl ToJson for v1::RejectCount {
    fn json(&self) -> Value {
        json!({"code": self.error_code, "reason": self.reason, "count": self.count})
    }
}

impl TableRow for v1::RejectCount {
    const COLUMNS: &'static [&'static str] = &["CODE", "COUNT", "REASON"];
    fn cells(&self) -> Vec<String> {
        vec![
            format!("{:#06x}", self.error_code),
            self.count.to_string(),
            self.reason.clone(),
        ]
    }
}

/// Reads frames from the UART on a thread, forwards DATA_RECORD payloads in batches.
async fn relay(
    client: &mut DataClient,
    port: &str,
    count: u64,
    timeout_secs: u64,
) -> Result<(), Failure> {
    if !port.starts_with("tcp:") {
        return Err(Failure::usage("--port must be tcp:HOST:PORT"));
    }
    let uart = Port::open(port, Duration::from_secs(10)).map_err(|e| {
        Failure::new(
            Exit::Unavailable,
            format_args!("cannot open the device UART {port}: {e}"),
        )
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut link = HostLink::new(uart);
        loop {
            match link.next_data_record(Duration::from_secs(3600)) {
                Ok(record) => {
                    if tx.send(record).is_err() {
                        return;
                    }
                }
                // A relay asks nothing: it waits on, and skips what it cannot read.
                Err(LinkError::Timeout { .. } | LinkError::Malformed { .. }) => {}
                // Closed or broken: the relay ends with the link.
                Err(_) => return,
            }
        }
    });
    let deadline = (timeout_secs > 0).then(|| Instant::now() + Duration::from_secs(timeout_secs));
    let source = format!("relay {port}");
    let (mut forwarded, mut accepted) = (0u64, 0u64);
    loop {
        let next = match deadline {
            Some(d) => {
                match tokio::time::timeout(d.saturating_duration_since(Instant::now()), rx.recv())
                    .await
                {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            None => rx.recv().await,
        };
        let Some(first) = next else { break };
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if count > 0 {
            batch.truncate((count - forwarded) as usize);
        }
        let verdicts = client
            .ingest_records(v1::IngestRecordsRequest {
                records: batch.clone(),
                source: source.clone(),
            })
            .await?
            .into_inner()
            .verdicts;
        for (record, v) in batch.iter().zip(&verdicts) {
            if v.accepted {
                accepted += 1;
            } else {
                eprintln!("refused record ({} bytes): {}", record.len(), v.reason);
            }
        }
        forwarded += batch.len() as u64;
        println!("forwarded {forwarded} records, {accepted} accepted");
        if count > 0 && forwarded >= count {
            break;
        }
    }
    Ok(())
}
