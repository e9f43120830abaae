//! `flashgate.v1.DataService`: ingest needs no credentials (records authenticate themselves),
//! queries and stats need the operator token. `flashgate.v1.DeviceMessageService`: the
//! down-link's queue (send needs the field role and is audited).

use std::sync::Arc;

use flashgate_proto::v1::device_message_service_server::DeviceMessageService;
use flashgate_proto::v1::{self, data_service_server::DataService};
use flashgate_protocol::ErrorCode;
use tonic::{Request, Response, Status};

use super::down::Outgoing;
use super::ingest::DataIngest;
use crate::access::Access;
use crate::ids::Serial;
use crate::rpc;

/// Text for a refusal code.
fn reason(code: u32) -> String {
    ErrorCode::from_u32(code).map_or_else(|| format!("code {code:#06x}"), |c| c.to_string())
}

/// The gRPC adapter over [`DataIngest`].
#[derive(Clone)]
pub struct DataApi {
    ingest: Arc<DataIngest>,
    access: Access,
}

impl DataApi {
    /// The data service over `ingest`; operator queries are checked by `access`.
    pub fn new(ingest: Arc<DataIngest>, access: Access) -> Self {
        Self { ingest, access }
    }
}

#[tonic::async_trait]
impl DataService for DataApi {
    async fn ingest_records(
        &self,
        request: Request<v1::IngestRecordsRequest>,
    ) -> Result<Response<v1::IngestRecordsResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let req = request.into_inner();
        rpc::handle("IngestRecords", async {
            let verdicts = self
                .ingest
                .ingest_from(peer, &req.records, &req.source)
                .await?;
            Ok(v1::IngestRecordsResponse {
                verdicts: verdicts
                    .into_iter()
                    .map(|v| match v {
                        Ok(()) => v1::RecordVerdict {
                            accepted: true,
                            error_code: 0,
                            reason: String::new(),
                        },
                        Err(code) => v1::RecordVerdict {
                            accepted: false,
                            error_code: code as u32,
                            reason: code.to_string(),
                        },
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn query_records(
        &self,
        request: Request<v1::QueryRecordsRequest>,
    ) -> Result<Response<v1::QueryRecordsResponse>, Status> {
        rpc::operator_call(
            "QueryRecords",
            &self.access,
            request,
            |_caller, req| async move {
                Ok(v1::QueryRecordsResponse {
                    records: self.ingest.query(&req).await?,
                })
            },
        )
        .await
    }

    async fn get_ingest_stats(
        &self,
        request: Request<v1::GetIngestStatsRequest>,
    ) -> Result<Response<v1::IngestStats>, Status> {
        rpc::operator_call(
            "GetIngestStats",
            &self.access,
            request,
            |_caller, _req| async {
                let stats = self.ingest.stats();
                Ok(v1::IngestStats {
                    accepted: stats.accepted,
                    rejected: stats
                        .rejected
                        .into_iter()
                        .map(|(code, count)| v1::RejectCount {
                            error_code: code,
                            reason: reason(code),
                            count,
                        })
                        .collect(),
                })
            },
        )
        .await
    }
}

/// `flashgate.v1.DeviceMessageService`: the down-link's operator side (send: role field,
/// audited; list: viewer).
#[derive(Clone)]
pub struct DeviceMessageApi {
    ingest: Arc<DataIngest>,
    access: Access,
}

impl DeviceMessageApi {
    /// The service over `ingest`'s down queue; callers are checked by `access`.
    pub fn new(ingest: Arc<DataIngest>, access: Access) -> Self {
        Self { ingest, access }
    }
}

#[tonic::async_trait]
impl DeviceMessageService for DeviceMessageApi {
    async fn send_device_message(
        &self,
        request: Request<v1::SendDeviceMessageRequest>,
    ) -> Result<Response<v1::DownMessage>, Status> {
        rpc::operator_call(
            "SendDeviceMessage",
            &self.access,
            request,
            |caller, req| async move {
                let serial = Serial::parse(&req.serial)?;
                let outgoing = Outgoing::from_request(&req)?;
                let record = self
                    .ingest
                    .down()
                    .send(&caller.actor(), serial, &outgoing)
                    .await?;
                Ok(record.to_proto(serial))
            },
        )
        .await
    }

    async fn list_device_messages(
        &self,
        request: Request<v1::ListDeviceMessagesRequest>,
    ) -> Result<Response<v1::ListDeviceMessagesResponse>, Status> {
        rpc::operator_call(
            "ListDeviceMessages",
            &self.access,
            request,
            |_caller, req| async move {
                let serial = Serial::parse(&req.serial)?;
                let messages = self.ingest.down().list(serial).await?;
                Ok(v1::ListDeviceMessagesResponse {
                    messages: messages.iter().map(|m| m.record.to_proto(serial)).collect(),
                })
            },
        )
        .await
    }
}
