//! The down-link's queue (`docs/protocol.md` §8, "Messages down"): messages an operator sends a
//! device, sealed for it under its down keys (`flashgate_protocol::data_stream::down`) when
//! queued, kept in the store until the device acknowledges them, and written to the device on
//! the data TCP connection it opened ([`super::tcp`]). Devices behind NAT cannot be connected
//! to, so this is queue-and-reply (LwM2M's queue mode): the connection the device keeps open
//! for its records carries its messages back.
//!
//! | key | value |
//! | --- | --- |
//! | `data/down/next/{serial}` | [`DownCounter`]: the next (epoch, counter) to seal with |
//! | `data/down/messages/{serial}/{epoch:010}-{counter:010}` | [`DownMessageRecord`] |
//!
//! The counter is taken in the queueing transaction (guarded by its revision), so two replicas
//! never seal two messages under one key and nonce; the queue is the store's, so it survives a
//! coordinator restart and any replica's connection delivers it. The ack is a sealed up record
//! (`down-ack E:C kind`, or `down-refused E:C CODE refused=N`), so only the device can move a
//! message to acked; the ingest hands such records here ([`DownQueue::on_report`]).

use flashgate_proto::clock::now_ms;
use flashgate_proto::v1;
use flashgate_protocol::data_stream::{
    handle, seal_down, DeviceRef, DownHeader, DownKind, MAX_DOWN_LEN,
};
use serde::{Deserialize, Serialize};

use super::index::DeviceIdIndex;
use crate::audit::{Actor, AuditLog, Entry};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{ProductId, Serial};
use crate::provisioning::Registry;
use crate::repository::{hex, Attempt, CasRetry, Db, JsonRecord, KeyPart, Scope, Stored, Txn};

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// In the store, not written to the device yet.
    Queued,
    /// Written to one of the device's connections; no ack yet.
    Delivered,
    /// The device's sealed ack arrived.
    Acked,
    /// The device refused it before acking it.
    Refused,
}

impl DeliveryState {
    fn to_proto(self) -> v1::DeliveryState {
        match self {
            Self::Queued => v1::DeliveryState::Queued,
            Self::Delivered => v1::DeliveryState::Delivered,
            Self::Acked => v1::DeliveryState::Acked,
            Self::Refused => v1::DeliveryState::Refused,
        }
    }
}

/// `data/down/next/{serial}`: the (epoch, counter) the device's next message is sealed with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DownCounter {
    /// Down-key epoch.
    pub epoch: u32,
    /// Next counter in it.
    pub next: u32,
}

impl JsonRecord for DownCounter {
    const PREFIX: &'static str = "data/down/next/";
    type Key = Serial;
}

/// Where a message is kept: per device, in counter order.
pub struct MessageKey {
    /// The device it is for.
    pub serial: Serial,
    /// Its down-key epoch.
    pub epoch: u32,
    /// Its counter.
    pub counter: u32,
}

impl KeyPart for MessageKey {
    fn write_key(&self, out: &mut String) {
        self.serial.write_key(out);
        out.push_str(&format!("/{:010}-{:010}", self.epoch, self.counter));
    }
}

/// `data/down/messages/…`: one message, sealed, with its delivery state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownMessageRecord {
    /// The device's product.
    pub product_id: ProductId,
    /// Down-key epoch.
    pub epoch: u32,
    /// Counter (unique per device and epoch).
    pub counter: u32,
    /// What it asks (`DownKind` as a number).
    pub kind: u8,
    /// What it carries, as text, for the operator.
    pub content: String,
    /// The sealed bytes written to the device (the same bytes on every delivery).
    #[serde(with = "hex")]
    pub sealed: Vec<u8>,
    /// Where it stands.
    pub state: DeliveryState,
    /// When it was queued (Unix ms).
    pub queued_at_ms: i64,
    /// When it was last written to a connection.
    pub delivered_at_ms: Option<i64>,
    /// When its ack arrived.
    pub acked_at_ms: Option<i64>,
    /// The operator who sent it.
    pub sent_by: String,
    /// Times the device reported it refused.
    pub device_refusals: u32,
    /// The device's last refusal code for it.
    pub last_refusal: Option<String>,
}

impl JsonRecord for DownMessageRecord {
    const PREFIX: &'static str = "data/down/messages/";
    type Key = MessageKey;
}

impl DownMessageRecord {
    /// The message as the API shows it.
    pub fn to_proto(&self, serial: Serial) -> v1::DownMessage {
        let kind = match DownKind::from_u8(self.kind) {
            Some(DownKind::Text) => v1::DownMessageKind::Text,
            Some(DownKind::RecordInterval) => v1::DownMessageKind::RecordInterval,
            Some(DownKind::CheckUpdate) => v1::DownMessageKind::CheckUpdate,
            Some(DownKind::StatusRequest) => v1::DownMessageKind::StatusRequest,
            None => v1::DownMessageKind::Unspecified,
        };
        v1::DownMessage {
            serial: serial.0.to_vec(),
            product_id: self.product_id.0,
            epoch: self.epoch,
            counter: self.counter,
            kind: kind as i32,
            content: self.content.clone(),
            state: self.state.to_proto() as i32,
            queued_at_ms: self.queued_at_ms,
            delivered_at_ms: self.delivered_at_ms.unwrap_or(0),
            acked_at_ms: self.acked_at_ms.unwrap_or(0),
            sent_by: self.sent_by.clone(),
            device_refusals: self.device_refusals,
            last_refusal: self.last_refusal.clone().unwrap_or_default(),
            sealed_len: self.sealed.len() as u32,
        }
    }
}

/// What an operator asks a device, checked.
pub struct Outgoing {
    /// The kind.
    pub kind: DownKind,
    /// Its body as sealed.
    pub body: Vec<u8>,
    /// Its content as shown.
    pub content: String,
}

impl Outgoing {
    /// Checks a request's kind and fields.
    pub fn from_request(req: &v1::SendDeviceMessageRequest) -> Result<Self> {
        let kind = v1::DownMessageKind::try_from(req.kind)
            .map_err(|_| E::InvalidArgument(format!("unknown message kind {}", req.kind)))?;
        match kind {
            v1::DownMessageKind::Text => {
                let body = req.text.as_bytes().to_vec();
                if body.is_empty() || !DownKind::Text.body_fits(&body) {
                    return Err(E::InvalidArgument(
                        "a text message carries 1 to 256 bytes".into(),
                    ));
                }
                Ok(Self {
                    kind: DownKind::Text,
                    body,
                    content: req.text.clone(),
                })
            }
            v1::DownMessageKind::RecordInterval => {
                if !(1..=3600).contains(&req.interval_s) {
                    return Err(E::InvalidArgument(
                        "the record interval is 1 to 3600 seconds".into(),
                    ));
                }
                Ok(Self {
                    kind: DownKind::RecordInterval,
                    body: req.interval_s.to_le_bytes().to_vec(),
                    content: format!("record every {} s", req.interval_s),
                })
            }
            v1::DownMessageKind::CheckUpdate => Ok(Self {
                kind: DownKind::CheckUpdate,
                body: Vec::new(),
                content: "check for update".into(),
            }),
            v1::DownMessageKind::StatusRequest => Err(E::InvalidArgument(
                "status requests are the coordinator's own (after a network update)".into(),
            )),
            v1::DownMessageKind::Unspecified => {
                Err(E::InvalidArgument("a message kind is required".into()))
            }
        }
    }
}

impl Outgoing {
    /// The coordinator's status request: the OS answers a receipt for `challenge`.
    pub fn status_request(challenge: [u8; 32]) -> Self {
        Self {
            kind: DownKind::StatusRequest,
            body: challenge.to_vec(),
            content: "status receipt request".into(),
        }
    }
}

/// A device's report on a down message, read from one of its accepted records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// `down-ack E:C …`: carried out.
    Ack {
        /// Epoch.
        epoch: u32,
        /// Counter.
        counter: u32,
    },
    /// `down-refused E:C CODE refused=N`: refused with `code`.
    Refused {
        /// Epoch (as the message claimed).
        epoch: u32,
        /// Counter (as the message claimed).
        counter: u32,
        /// The device's code, e.g. `0x0502`.
        code: String,
    },
}

impl Report {
    /// The report a record body carries, if it is one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let mut words = text.split(' ');
        let what = words.next()?;
        let (epoch, counter) = words.next()?.split_once(':')?;
        let (epoch, counter) = (epoch.parse().ok()?, counter.parse().ok()?);
        match what {
            "down-ack" => Some(Self::Ack { epoch, counter }),
            "down-refused" => Some(Self::Refused {
                epoch,
                counter,
                code: words.next()?.to_owned(),
            }),
            _ => None,
        }
    }
}

/// The queue: sealing, listing, delivery and ack state.
#[derive(Clone)]
pub struct DownQueue {
    db: Db,
    registry: Registry,
    audit: AuditLog,
}

impl DownQueue {
    /// The queue over `db`, sealing with device keys from `registry`, auditing sends in `audit`.
    pub fn new(db: Db, registry: Registry, audit: AuditLog) -> Self {
        Self {
            db,
            registry,
            audit,
        }
    }

    /// The registered device with this serial (any product).
    async fn product_of(&self, serial: Serial) -> Result<ProductId> {
        DeviceIdIndex::lookup(&self.db, &DeviceRef::Handle(handle(&serial.0)))
            .await?
            .into_iter()
            .find(|(_, s)| *s == serial)
            .map(|(p, _)| p)
            .ok_or_else(|| E::NotFound("device is not registered".into()))
    }

    /// Seals `outgoing` for `serial` under the device's next down counter and queues it, with
    /// its audit entry, in one transaction.
    pub async fn send(
        &self,
        by: &Actor,
        serial: Serial,
        outgoing: &Outgoing,
    ) -> Result<DownMessageRecord> {
        let product_id = self.product_of(serial).await?;
        let device_key = self.registry.device_key(product_id.0, &serial.0).await?;
        CasRetry::new("a device's down counter")
            .run(|| async {
                let stored = self.db.get::<DownCounter>(&serial).await?;
                let counter = stored
                    .as_ref()
                    .map(|s| s.record.clone())
                    .unwrap_or_default();
                let header = DownHeader {
                    epoch: counter.epoch,
                    counter: counter.next,
                };
                let mut sealed = vec![0u8; MAX_DOWN_LEN];
                let n = seal_down(
                    &device_key,
                    &header,
                    outgoing.kind,
                    &outgoing.body,
                    &mut sealed,
                )
                .map_err(|code| E::InvalidArgument(code.to_string()))?;
                sealed.truncate(n);
                let next = DownCounter {
                    epoch: counter.epoch,
                    next: counter.next.checked_add(1).ok_or_else(|| {
                        E::Exhausted("the device's down counters are used up".into())
                    })?,
                };
                let record = DownMessageRecord {
                    product_id,
                    epoch: header.epoch,
                    counter: header.counter,
                    kind: outgoing.kind as u8,
                    content: outgoing.content.clone(),
                    sealed,
                    state: DeliveryState::Queued,
                    queued_at_ms: now_ms(),
                    delivered_at_ms: None,
                    acked_at_ms: None,
                    sent_by: by.as_str().to_owned(),
                    device_refusals: 0,
                    last_refusal: None,
                };
                let key = MessageKey {
                    serial,
                    epoch: header.epoch,
                    counter: header.counter,
                };
                let txn = match &stored {
                    Some(s) => Txn::new().unchanged(s).replace(s, &next),
                    None => Txn::new()
                        .absent::<DownCounter>(&serial)
                        .put(&serial, &next),
                }
                .absent::<DownMessageRecord>(&key)
                .put(&key, &record);
                let entry = Entry::new(by, "device message queued", serial).detail(format!(
                    "{} {}:{}: {}",
                    outgoing.kind.name(),
                    header.epoch,
                    header.counter,
                    outgoing.content
                ));
                let txn = self.audit.append_global(txn, entry).await?;
                Ok(Attempt::committed(self.db.commit(txn).await?, record))
            })
            .await
    }

    /// The (epoch, next counter) the device's next message will take: it moves with every
    /// message queued, so a connection reads this one key instead of the whole queue to learn
    /// whether anything new waits. `None` before the first message.
    pub async fn next_counter(&self, serial: Serial) -> Result<Option<(u32, u32)>> {
        let stored = self.db.get::<DownCounter>(&serial).await?;
        Ok(stored.map(|s| (s.record.epoch, s.record.next)))
    }

    /// The device's messages, oldest first.
    pub async fn list(&self, serial: Serial) -> Result<Vec<Stored<DownMessageRecord>>> {
        self.db
            .list(Scope::<DownMessageRecord>::under(&serial))
            .await
    }

    /// The messages a connection of the device should write: all not acked or refused.
    pub async fn undelivered(&self, serial: Serial) -> Result<Vec<Stored<DownMessageRecord>>> {
        let mut all = self.list(serial).await?;
        all.retain(|m| {
            matches!(
                m.record.state,
                DeliveryState::Queued | DeliveryState::Delivered
            )
        });
        Ok(all)
    }

    /// Changes one message with `change` (re-read and retried while other writers win).
    async fn update(
        &self,
        key: &MessageKey,
        change: impl Fn(&mut DownMessageRecord) -> bool,
    ) -> Result<()> {
        CasRetry::new("a down message")
            .run(|| async {
                let Some(stored) = self.db.get::<DownMessageRecord>(key).await? else {
                    return Ok(Attempt::Done(()));
                };
                let mut record = stored.record.clone();
                if !change(&mut record) {
                    return Ok(Attempt::Done(()));
                }
                let txn = Txn::new().unchanged(&stored).replace(&stored, &record);
                Ok(Attempt::committed(self.db.commit(txn).await?, ()))
            })
            .await
    }

    /// The message was written to a connection of the device.
    pub async fn delivered(&self, serial: Serial, epoch: u32, counter: u32) -> Result<()> {
        let now = now_ms();
        let key = MessageKey {
            serial,
            epoch,
            counter,
        };
        self.update(&key, |m| {
            if m.state == DeliveryState::Queued {
                m.state = DeliveryState::Delivered;
            }
            m.delivered_at_ms = Some(now);
            true
        })
        .await
    }

    /// A report from the device's authenticated record: an ack or a refusal of a message.
    pub async fn on_report(&self, serial: Serial, report: &Report) -> Result<()> {
        let now = now_ms();
        match report {
            Report::Ack { epoch, counter } => {
                let key = MessageKey {
                    serial,
                    epoch: *epoch,
                    counter: *counter,
                };
                self.update(&key, |m| {
                    if m.state == DeliveryState::Acked {
                        return false;
                    }
                    m.state = DeliveryState::Acked;
                    m.acked_at_ms = Some(now);
                    true
                })
                .await
            }
            Report::Refused {
                epoch,
                counter,
                code,
            } => {
                let key = MessageKey {
                    serial,
                    epoch: *epoch,
                    counter: *counter,
                };
                self.update(&key, |m| {
                    // A replay of an acked message is counted on it; it stays acked.
                    if m.state != DeliveryState::Acked {
                        m.state = DeliveryState::Refused;
                    }
                    m.device_refusals += 1;
                    m.last_refusal = Some(code.clone());
                    true
                })
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_from_the_bodies_the_os_sends() {
        assert_eq!(
            Report::parse(b"down-ack 0:3 text"),
            Some(Report::Ack {
                epoch: 0,
                counter: 3
            })
        );
        assert_eq!(
            Report::parse(b"down-refused 1:7 0x0502 refused=2"),
            Some(Report::Refused {
                epoch: 1,
                counter: 7,
                code: "0x0502".into()
            })
        );
        assert_eq!(Report::parse(b"heartbeat uptime_ticks=1"), None);
        assert_eq!(Report::parse(b"down-ack x:3"), None);
        assert_eq!(Report::parse(&[0xFF, 0x00]), None);
    }
}
