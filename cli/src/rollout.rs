//! `flashgate update rollout|pause|resume|list|status ROLLOUT`: staged rollouts, their waves and
//! their gates. The coordinator checks the plan (thresholds, increasing waves) and takes the
//! steps; this file reads the flags and shows the waves.

use clap::{ArgGroup, Args};
use flashgate_cli::grpc::Clients;
use flashgate_proto::v1;
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::output::{cell, Printer, TableRow, ToJson};
use crate::parse;

/// `update rollout`'s flags.
#[derive(Args)]
#[command(group(ArgGroup::new("targets").required(true).args(["devices", "order", "all"])))]
pub struct RolloutArgs {
    /// Digest of the OS release (64 hex chars, see `flashgate release list`).
    #[arg(long)]
    release: String,
    /// Target these devices (32 hex chars each, comma-separated).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Target every device registered under this order.
    #[arg(long)]
    order: Option<String>,
    /// Target every registered device of the release's product.
    #[arg(long)]
    all: bool,
    /// Cumulative wave sizes over the targets left after the groups: percentages
    /// (10%,40%,100%) or counts (2,5,20), increasing, the last reaching every target.
    #[arg(long, value_delimiter = ',', required_unless_present = "groups")]
    waves: Vec<String>,
    /// A named group (an order) as a wave of its own, before the --waves. Repeatable; with no
    /// --waves, the targets left after the groups are one last wave.
    #[arg(long = "group", value_name = "ORDER")]
    groups: Vec<String>,
    /// Pause when failures (rolled back, or refused) in the open waves go above this: a
    /// percentage of their devices (10%) or a count (3).
    #[arg(long)]
    failure_threshold: String,
    /// A wave passes once this many of its devices confirmed (default: once each of them
    /// confirmed or failed).
    #[arg(long, default_value_t = 0)]
    min_confirmed: u32,
}

/// `10%` or `2`: `percent` or `count` of the proto's oneof.
fn share<T>(
    text: &str,
    what: &str,
    percent: fn(u32) -> T,
    count: fn(u32) -> T,
) -> Result<T, Failure> {
    let text = text.trim();
    let number = |n: &str| {
        n.parse::<u32>().map_err(|_| {
            Failure::usage(format_args!(
                "{what} {text:?} must be a percentage (10%) or a count (3)"
            ))
        })
    };
    match text.strip_suffix('%') {
        Some(p) => number(p).map(percent),
        None => number(text).map(count),
    }
}

/// Starts the rollout; prints its waves.
pub async fn start(args: RolloutArgs, clients: &Clients, out: &Printer) -> Result<(), Failure> {
    use v1::failure_threshold::Limit;
    use v1::wave_size::Size;
    let release_digest = parse::hex32(&args.release, "--release")?;
    let serials = args
        .devices
        .iter()
        .map(|s| parse::serial(s, "--devices").map(|s| s.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let waves = args
        .waves
        .iter()
        .map(|w| {
            share(w, "--waves", Size::Percent, Size::Count)
                .map(|size| v1::WaveSize { size: Some(size) })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limit = share(
        &args.failure_threshold,
        "--failure-threshold",
        Limit::Percent,
        Limit::Count,
    )?;
    let status = clients
        .update()
        .start_rollout(v1::StartRolloutRequest {
            release_digest,
            serials,
            order_id: args.order.unwrap_or_default(),
            all_devices: args.all,
            groups: args.groups,
            waves,
            failure_threshold: Some(v1::FailureThreshold { limit: Some(limit) }),
            min_confirmed: args.min_confirmed,
        })
        .await?
        .into_inner();
    show(out, &status);
    Ok(())
}

/// What a rollout command does to the rollout it names.
#[derive(Clone, Copy)]
pub enum Action {
    /// `update pause`.
    Pause,
    /// `update resume`.
    Resume,
    /// `update status ROLLOUT`.
    Status,
}

/// Pauses, resumes or reads one rollout; prints its waves.
pub async fn act(
    action: Action,
    rollout_id: String,
    clients: &Clients,
    out: &Printer,
) -> Result<(), Failure> {
    let mut updates = clients.update();
    let request = v1::RolloutRequest { rollout_id };
    let status = match action {
        Action::Pause => updates.pause_rollout(request).await?,
        Action::Resume => updates.resume_rollout(request).await?,
        Action::Status => updates.get_rollout(request).await?,
    }
    .into_inner();
    show(out, &status);
    Ok(())
}

/// Lists rollouts, newest first.
pub async fn list(
    product_id: u32,
    limit: u32,
    clients: &Clients,
    out: &Printer,
) -> Result<(), Failure> {
    let reply = clients
        .update()
        .list_rollouts(v1::ListRolloutsRequest { product_id, limit })
        .await?
        .into_inner();
    out.list(&reply.rollouts);
    if reply.truncated {
        out.note(format_args!(
            "(more rollouts than the {} shown: --limit raises it)",
            reply.rollouts.len()
        ));
    }
    Ok(())
}

/// Each wave as `confirmed/targeted`, with its failures when there are any.
fn waves_text(waves: &[v1::WaveStatus]) -> String {
    let cells: Vec<String> = waves
        .iter()
        .map(|w| match w.failed {
            0 => format!("{}/{}", w.confirmed, w.targeted),
            f => format!("{}/{} ({f} failed)", w.confirmed, w.targeted),
        })
        .collect();
    cells.join(" ")
}

impl TableRow for v1::RolloutStatus {
    const COLUMNS: &'static [&'static str] = &[
        "ROLLOUT",
        "PRODUCT",
        "VERSION",
        "STATE",
        "OPEN",
        "CONFIRMED/TARGETED BY WAVE",
        "CREATED",
        "UPDATED",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.rollout_id.clone(),
            self.product_id.to_string(),
            self.version.to_string(),
            self.state.clone(),
            format!("{}/{}", self.open_waves, self.waves.len()),
            waves_text(&self.waves),
            cell::time(self.created_at_ms),
            cell::time(self.updated_at_ms),
        ]
    }
}

fn threshold_text(t: Option<&v1::FailureThreshold>) -> String {
    use v1::failure_threshold::Limit;
    match t.and_then(|t| t.limit) {
        Some(Limit::Percent(p)) => format!("{p}%"),
        Some(Limit::Count(c)) => format!("{c} failures"),
        None => "-".into(),
    }
}

fn show(out: &Printer, s: &v1::RolloutStatus) {
    let state = if s.state == "paused" {
        format!("paused ({})", s.pause_reason)
    } else {
        s.state.clone()
    };
    let headline = format!(
        "rollout {}: version {}, {state}; {} of {} waves open; failure threshold {}",
        s.rollout_id,
        s.version,
        s.open_waves,
        s.waves.len(),
        threshold_text(s.failure_threshold.as_ref())
    );
    out.summary(s, headline, &s.waves);
}

impl ToJson for v1::RolloutStatus {
    fn json(&self) -> Value {
        json!({"rollout_id": self.rollout_id, "product_id": self.product_id,
            "version": self.version, "state": self.state, "pause_reason": self.pause_reason,
            "open_waves": self.open_waves,
            "failure_threshold": threshold_text(self.failure_threshold.as_ref()),
            "min_confirmed": self.min_confirmed, "accepted_failures": self.accepted_failures,
            "created_at_ms": self.created_at_ms, "updated_at_ms": self.updated_at_ms,
            "waves": self.waves.iter().map(ToJson::json).collect::<Vec<_>>()})
    }
}

impl ToJson for v1::WaveStatus {
    fn json(&self) -> Value {
        json!({"index": self.index, "label": self.label, "open": self.open,
            "targeted": self.targeted, "confirmed": self.confirmed, "failed": self.failed,
            "pending": self.pending, "superseded": self.superseded})
    }
}

impl TableRow for v1::WaveStatus {
    const COLUMNS: &'static [&'static str] = &[
        "WAVE",
        "REACHES",
        "OPEN",
        "TARGETED",
        "CONFIRMED",
        "FAILED",
        "PENDING",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.index.to_string(),
            self.label.clone(),
            if self.open { "yes" } else { "no" }.into(),
            self.targeted.to_string(),
            self.confirmed.to_string(),
            self.failed.to_string(),
            self.pending.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::wave_size::Size;

    #[test]
    fn shares_are_percentages_or_counts() {
        let s = |t: &str| share(t, "--waves", Size::Percent, Size::Count);
        assert_eq!(s("10%").unwrap(), Size::Percent(10));
        assert_eq!(s(" 5 ").unwrap(), Size::Count(5));
        for bad in ["", "%", "ten", "-1", "1.5%"] {
            let e = s(bad).unwrap_err();
            assert!(
                e.message.contains("must be a percentage (10%) or a count"),
                "{bad}"
            );
        }
    }
}
