//! The leadership loop: campaign in the store's election (etcd's election API, or the
//! embedded store's local seat), do the work every interval while leading, campaign again when
//! leadership is lost, resign when told to stop.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Election;

/// Runs `work` every `interval` while this candidate leads `election`, until `stop` changes.
pub async fn while_leading<F, Fut>(
    election: &dyn Election,
    node_id: &str,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let campaign = tokio::select! {
            campaign = election.campaign() => campaign,
            _ = stop.changed() => return,
        };
        let mut leadership = match campaign {
            Ok(leadership) => leadership,
            Err(error) => {
                tracing::warn!(%error, "leader election failed; campaigning again");
                tokio::select! {
                    () = tokio::time::sleep(interval) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        tracing::info!(
            node = node_id,
            "leading housekeeping (lease expiry, replay-cache sweep)"
        );
        let stopped = loop {
            tokio::select! {
                reason = leadership.lost() => {
                    tracing::warn!(node = node_id, %reason, "housekeeping leadership lost");
                    break false;
                }
                () = tokio::time::sleep(interval) => work().await,
                _ = stop.changed() => break true,
            }
        };
        leadership.resign().await;
        if stopped {
            return;
        }
    }
}
