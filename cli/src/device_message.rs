//! `flashgate device send SERIAL …` and `flashgate device messages SERIAL`: the down-link's
//! operator side (`docs/operations.md`, "Messages down"). The coordinator seals the message for
//! the device and queues it; the device gets it on the data connection it keeps open, and its
//! sealed ack moves it to `acked`.

use clap::{ArgGroup, Args};
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{Printer, TableRow, ToJson};
use crate::parse;

#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["text", "interval", "check_update"])))]
pub struct DeviceSendArgs {
    /// Device serial (32 hex characters).
    serial: String,
    /// A line of text the device shows (the demo OS writes it on its UART).
    #[arg(long)]
    text: Option<String>,
    /// Configuration: a telemetry record every this many seconds (1–3600).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3600))]
    interval: Option<u32>,
    /// Ask the device to check for an update now.
    #[arg(long)]
    check_update: bool,
}

#[derive(Args)]
pub struct DeviceMessagesArgs {
    /// Device serial (32 hex characters).
    serial: String,
}

pub async fn send(args: DeviceSendArgs, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    let serial = parse::serial(&args.serial, "SERIAL")?.to_vec();
    let (kind, text, interval_s) = match (args.text, args.interval) {
        (Some(text), _) => (v1::DownMessageKind::Text, text, 0),
        (None, Some(seconds)) => (v1::DownMessageKind::RecordInterval, String::new(), seconds),
        (None, None) => (v1::DownMessageKind::CheckUpdate, String::new(), 0),
    };
    let message = clients
        .device_messages()
        .send_device_message(v1::SendDeviceMessageRequest {
            serial,
            kind: kind as i32,
            text,
            interval_s,
        })
        .await?
        .into_inner();
    out.done(
        &message,
        format_args!(
            "queued message {}:{} for {} ({}); `flashgate device messages {}` shows its delivery",
            message.epoch, message.counter, args.serial, message.content, args.serial
        ),
    );
    Ok(())
}

pub async fn messages(
    args: DeviceMessagesArgs,
    clients: &Clients,
    out: &Printer,
) -> Result<(), Failure> {
    let serial = parse::serial(&args.serial, "SERIAL")?.to_vec();
    let messages = clients
        .device_messages()
        .list_device_messages(v1::ListDeviceMessagesRequest { serial })
        .await?
        .into_inner()
        .messages;
    out.list(&messages);
    Ok(())
}

fn kind(m: &v1::DownMessage) -> &'static str {
    match v1::DownMessageKind::try_from(m.kind) {
        Ok(v1::DownMessageKind::Text) => "text",
        Ok(v1::DownMessageKind::RecordInterval) => "interval",
        Ok(v1::DownMessageKind::CheckUpdate) => "check-update",
        Ok(v1::DownMessageKind::StatusRequest) => "status",
        _ => "unknown",
    }
}

fn state(m: &v1::DownMessage) -> &'static str {
    match v1::DeliveryState::try_from(m.state) {
        Ok(v1::DeliveryState::Queued) => "queued",
        Ok(v1::DeliveryState::Delivered) => "delivered",
        Ok(v1::DeliveryState::Acked) => "acked",
        Ok(v1::DeliveryState::Refused) => "refused",
        _ => "unknown",
    }
}

impl ToJson for v1::DownMessage {
    fn json(&self) -> Value {
        json!({"serial": hex::encode(&self.serial), "product_id": self.product_id,
            "epoch": self.epoch, "counter": self.counter, "kind": kind(self),
            "content": self.content, "state": state(self),
            "queued_at_ms": self.queued_at_ms, "delivered_at_ms": self.delivered_at_ms,
            "acked_at_ms": self.acked_at_ms, "sent_by": self.sent_by,
            "device_refusals": self.device_refusals, "last_refusal": self.last_refusal,
            "sealed_len": self.sealed_len})
    }
}

impl TableRow for v1::DownMessage {
    const COLUMNS: &'static [&'static str] = &[
        "EPOCH", "COUNTER", "KIND", "STATE", "REFUSALS", "SENT BY", "CONTENT",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.epoch.to_string(),
            self.counter.to_string(),
            kind(self).into(),
            state(self).into(),
            if self.device_refusals == 0 {
                "0".into()
            } else {
                format!("{} ({})", self.device_refusals, self.last_refusal)
            },
            self.sent_by.clone(),
            self.content.clone(),
        ]
    }
}
