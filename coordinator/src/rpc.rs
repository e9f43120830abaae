//! The one way every gRPC method of every service (operator, station, update, data) is served:
//! [`handle`] runs the call in a `tracing` span named after the method, logs and counts its
//! outcome (status code, latency; never secrets) and maps a
//! [`CoordinatorError`](crate::error::CoordinatorError) to its status. Operator methods go
//! through [`operator_call`], which checks the caller's credential and role first.

use std::future::Future;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::access::{Access, Caller};
use crate::error::Result;

/// Serves one call. A `station` field in the span is filled in by station methods once the
/// caller is authenticated.
pub async fn handle<T>(
    method: &'static str,
    call: impl Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!(
        "rpc",
        method,
        station = tracing::field::Empty,
        operator = tracing::field::Empty
    );
    async move {
        let started = Instant::now();
        let result = call.await;
        let elapsed = started.elapsed();
        let elapsed_us = elapsed.as_micros() as u64;
        match result {
            Ok(value) => {
                tracing::info!(elapsed_us, code = "OK", "rpc done");
                crate::metrics::rpc(method, tonic::Code::Ok, elapsed.as_secs_f64());
                Ok(Response::new(value))
            }
            Err(error) => {
                let status = Status::from(error);
                let (code, message) = (status.code(), status.message());
                if needs_attention(code) {
                    tracing::warn!(elapsed_us, ?code, message, "rpc refused");
                } else {
                    tracing::info!(elapsed_us, ?code, message, "rpc refused");
                }
                crate::metrics::rpc(method, code, elapsed.as_secs_f64());
                Err(status)
            }
        }
    }
    .instrument(span)
    .await
}

/// Refusals an operator should look at: our side failed, or someone presented bad credentials.
/// The others (an order used up, a lease ended, a malformed request) are the caller's business
/// and are logged at info.
fn needs_attention(code: tonic::Code) -> bool {
    use tonic::Code as C;
    matches!(
        code,
        C::Internal
            | C::DataLoss
            | C::Unavailable
            | C::Unknown
            | C::Unauthenticated
            | C::PermissionDenied
    )
}

/// Serves an operator call: the caller's credential and its role are checked against
/// [`crate::access::roles`] before `call` sees the request (a refused call runs nothing and
/// writes nothing); `call` gets the caller, for the audit log.
pub async fn operator_call<Req, T, Fut>(
    method: &'static str,
    access: &Access,
    request: Request<Req>,
    call: impl FnOnce(Caller, Req) -> Fut,
) -> Result<Response<T>, Status>
where
    Fut: Future<Output = Result<T>>,
{
    handle(method, async move {
        let caller = access.authorize(&request, method).await?;
        tracing::Span::current().record("operator", caller.name.as_str());
        call(caller, request.into_inner()).await
    })
    .await
}
