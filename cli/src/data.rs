//! `flashgate data …`: read verified telemetry (`tail`, `query`, `stats`) and forward a
//! device's sealed records from its UART to the coordinator (`relay`).

use std::time::{Duration, Instant};

use clap::Subcommand;
use flashgate_proto::v1::{self, data_service_client::DataServiceClient};
use flashgate_protocol::uart::host::{HostLink, LinkError, Port};
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::{emit_json, print_table, request, usage, Failure};

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
        #[arg(long, default_value_t = 0)]
        since: i64,
        #[arg(long, default_value_t = 0)]
        until: i64,
        #[arg(long, default_value_t = 0)]
        limit: u32,
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

fn record_json(r: &v1::DataRecord) -> Value {
    json!({"serial": hex::encode(&r.serial), "product_id": r.product_id, "epoch": r.epoch, "counter": r.counter,
        "kind": kind(r.kind), "body": body_text(r), "received_at_ms": r.received_at_ms, "source": r.source, "wire_len": r.wire_len})
}

fn print_records(records: &[v1::DataRecord], json: bool, header: bool) {
    if json {
        for r in records {
            println!("{}", record_json(r));
        }
        return;
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.received_at_ms.to_string(),
                r.epoch.to_string(),
                r.counter.to_string(),
                kind(r.kind).into(),
                r.wire_len.to_string(),
                body_text(r),
            ]
        })
        .collect();
    if header {
        print_table(
            &["RECEIVED", "EPOCH", "COUNTER", "KIND", "BYTES", "BODY"],
            rows,
        );
    } else {
        for row in rows {
            println!("{}", row.join("  "));
        }
    }
}

fn serial(text: &str) -> Result<Vec<u8>, Failure> {
    Ok(flashgate_proto::serial::from_hex(text)
        .ok_or_else(|| usage("--serial must be 32 hex characters"))?
        .to_vec())
}

pub async fn run(cmd: DataCmd, channel: Channel, token: &str, json: bool) -> Result<(), Failure> {
    let mut client = DataServiceClient::new(channel);
    match cmd {
        DataCmd::Tail {
            serial: s,
            lines,
            follow,
        } => {
            let serial = serial(&s)?;
            let query = |from_ms: i64, limit: u32| v1::QueryRecordsRequest {
                serial: serial.clone(),
                from_ms,
                to_ms: 0,
                limit,
            };
            let mut records = client
                .query_records(request(token, query(0, lines)))
                .await?
                .into_inner()
                .records;
            print_records(&records, json, true);
            // With --follow: until interrupted (Ctrl-C).
            #[allow(clippy::while_immutable_condition)] // --follow runs until interrupted
            while follow {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let since = records.last().map_or(0, |r| r.received_at_ms);
                let seen: Vec<(u32, u32)> = records.iter().map(|r| (r.epoch, r.counter)).collect();
                let fresh: Vec<v1::DataRecord> = client
                    .query_records(request(token, query(since, 0)))
                    .await?
                    .into_inner()
                    .records
                    .into_iter()
                    .filter(|r| !seen.contains(&(r.epoch, r.counter)))
                    .collect();
                print_records(&fresh, json, false);
                records.extend(fresh);
            }
        }
        DataCmd::Query {
            serial: s,
            since,
            until,
            limit,
        } => {
            let records = client
                .query_records(request(
                    token,
                    v1::QueryRecordsRequest {
                        serial: serial(&s)?,
                        from_ms: since,
                        to_ms: until,
                        limit,
                    },
                ))
                .await?
                .into_inner()
                .records;
            if json {
                emit_json(Value::Array(records.iter().map(record_json).collect()));
            } else {
                print_records(&records, false, true);
            }
        }
        DataCmd::Stats => {
            let stats = client
                .get_ingest_stats(request(token, v1::GetIngestStatsRequest {}))
                .await?
                .into_inner();
            if json {
                emit_json(
                    json!({"accepted": stats.accepted, "rejected": stats.rejected.iter()
                    .map(|r| json!({"code": r.error_code, "reason": r.reason, "count": r.count})).collect::<Vec<_>>()}),
                );
            } else {
                println!("accepted {}", stats.accepted);
                print_table(
                    &["CODE", "COUNT", "REASON"],
                    stats
                        .rejected
                        .iter()
                        .map(|r| {
                            vec![
                                format!("{:#06x}", r.error_code),
                                r.count.to_string(),
                                r.reason.clone(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        DataCmd::Relay {
            port,
            count,
            timeout_secs,
        } => relay(&mut client, &port, count, timeout_secs).await?,
    }
    Ok(())
}

/// Reads frames from the UART on a thread, forwards DATA_RECORD payloads in batches.
async fn relay(
    client: &mut DataServiceClient<Channel>,
    port: &str,
    count: u64,
    timeout_secs: u64,
) -> Result<(), Failure> {
    if !port.starts_with("tcp:") {
        return Err(usage("--port must be tcp:HOST:PORT"));
    }
    let uart = Port::open(port, Duration::from_secs(10)).map_err(|e| Failure {
        code: 3,
        message: format!("cannot open the device UART {port}: {e}"),
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
