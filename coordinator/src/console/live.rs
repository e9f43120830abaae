//! What the order pages poll for live counts (`console.js`, every 2 s): the same API calls as
//! the pages, as JSON (the rollouts' are `rollouts::live`).

use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use flashgate_proto::v1;

use super::html::Progress;
use super::{LoggedIn, Shared};

/// One order's counts.
#[derive(serde::Serialize)]
pub struct LiveOrder {
    /// The order id.
    pub id: String,
    /// Its counts.
    #[serde(flatten)]
    pub progress: Progress,
    /// Live leases.
    pub active_leases: u32,
}

/// `GET /live/orders.json`: `{"orders":[{"id", "ordered", "consumed", "failed", "reserved",
/// "remaining", "active_leases"}]}`, or the API's refusal with its status.
pub async fn orders(State(console): State<Shared>, user: LoggedIn) -> Response {
    let caller = console.api.caller(&user.session.credentials);
    match caller.list_orders(v1::ListOrdersRequest {}).await {
        Ok(list) => {
            let orders: Vec<LiveOrder> = list
                .orders
                .iter()
                .map(|status| LiveOrder {
                    id: status
                        .order
                        .as_ref()
                        .map(|o| o.order_id.clone())
                        .unwrap_or_default(),
                    progress: super::pages::progress(status),
                    active_leases: status.active_leases,
                })
                .collect();
            Json(serde_json::json!({ "orders": orders })).into_response()
        }
        Err(status) => super::rollouts::refused_json(&status),
    }
}
