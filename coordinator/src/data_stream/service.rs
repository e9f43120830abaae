//! `flashgate.v1.DataService`: ingest needs no credentials (records authenticate themselves),
//! queries and stats need the operator token.

use std::sync::Arc;

use flashgate_proto::v1::{self, data_service_server::DataService};
use tonic::{Request, Response, Status};

use super::{reason, DataIngest};

/// The gRPC adapter over [`DataIngest`].
#[derive(Clone)]
pub struct DataApi(pub Arc<DataIngest>);

#[tonic::async_trait]
impl DataService for DataApi {
    async fn ingest_records(
        &self,
        request: Request<v1::IngestRecordsRequest>,
    ) -> Result<Response<v1::IngestRecordsResponse>, Status> {
        let req = request.into_inner();
        let verdicts = self.0.ingest(&req.records, &req.source).await?;
        Ok(Response::new(v1::IngestRecordsResponse {
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
        }))
    }

    async fn query_records(
        &self,
        request: Request<v1::QueryRecordsRequest>,
    ) -> Result<Response<v1::QueryRecordsResponse>, Status> {
        self.0.coordinator.check_operator(&request)?;
        let records = self.0.query(request.get_ref()).await?;
        Ok(Response::new(v1::QueryRecordsResponse { records }))
    }

    async fn get_ingest_stats(
        &self,
        request: Request<v1::GetIngestStatsRequest>,
    ) -> Result<Response<v1::IngestStats>, Status> {
        self.0.coordinator.check_operator(&request)?;
        let stats = self.0.stats();
        Ok(Response::new(v1::IngestStats {
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
        }))
    }
}
