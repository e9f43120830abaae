//! Staged rollouts in the console: the list on the updates page, one rollout's page with its
//! waves, the live counts the pages poll, and pause / resume — each confirmed first, each one
//! call of `UpdateService` with the operator's token (the API decides and records it).

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::Form;
use flashgate_proto::v1;
use tonic::Status;

use super::actions::{refused_page, stale_form, CsrfForm};
use super::api::Caller;
use super::html::{self, csrf_field, esc, time};
use super::{LoggedIn, Shared};
use crate::access::Role;

/// Rollouts the updates page lists at most (the newest).
const LIST_LIMIT: u32 = 50;

/// What an operator does to a rollout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Pause,
    Resume,
}

impl Verb {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pause => "Pause",
            Self::Resume => "Resume",
        }
    }

    /// The state in which the verb does something.
    fn applies_in(self) -> &'static str {
        match self {
            Self::Pause => "running",
            Self::Resume => "paused",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Self::Pause => {
                "No device gets its package until it is resumed, devices of open waves included."
            }
            Self::Resume => {
                "Devices of open waves get their packages again; the failures counted so far are \
                 accepted (the threshold counts only later ones)."
            }
        }
    }
}

/// The rollout's Pause and Resume controls: links to their confirmation pages for an operator
/// whose role may act (the one that does not apply now is hidden, and `console.js` swaps them
/// as the state changes); disabled buttons, saying why, for everyone else.
fn controls(user: &LoggedIn, r: &v1::RolloutStatus) -> String {
    let id = esc(&r.rollout_id);
    if r.state == "completed" {
        return String::from(r#"<span class="muted">completed</span>"#);
    }
    let mut out = String::new();
    for verb in [Verb::Pause, Verb::Resume] {
        let hidden = if r.state == verb.applies_in() {
            ""
        } else {
            " hidden"
        };
        if user.session.operator.may(Role::Release) {
            let _ = write!(
                out,
                r#"<a class="button" href="/updates/rollouts/{id}/{word}" data-when="{when}"{hidden}>{label}</a> "#,
                word = verb.word(),
                when = verb.applies_in(),
                label = verb.label(),
            );
        } else {
            let _ = write!(
                out,
                r#"<button type="button" disabled title="needs the release role" data-when="{when}"{hidden}>{label}</button> "#,
                when = verb.applies_in(),
                label = verb.label(),
            );
        }
    }
    if !user.session.operator.may(Role::Release) {
        out.push_str(r#"<span class="muted">(needs the release role)</span>"#);
    }
    out
}

/// Where a wave stands, as its bar draws it.
fn wave_bar(rollout_id: &str, w: &v1::WaveStatus) -> String {
    let pct = |n: u32| {
        if w.targeted == 0 {
            0.0
        } else {
            (f64::from(n) * 100.0 / f64::from(w.targeted)).min(100.0)
        }
    };
    let confirmed = pct(w.confirmed);
    let failed = pct(w.failed).min(100.0 - confirmed);
    format!(
        r#"<svg class="bar wave{closed}" id="wave-{id}-{index}" role="img" aria-label="{label}" viewBox="0 0 100 12" preserveAspectRatio="none">
<rect class="pending" x="0" y="0" height="12" width="100"></rect>
<rect class="confirmed" x="0" y="0" height="12" width="{confirmed:.2}"></rect>
<rect class="failed" x="{confirmed:.2}" y="0" height="12" width="{failed:.2}"></rect>
</svg>"#,
        closed = if w.open { "" } else { " closed" },
        id = esc(rollout_id),
        index = w.index,
        label = esc(&wave_label(w)),
    )
}

/// The sentence a screen reader reads for a wave's bar.
fn wave_label(w: &v1::WaveStatus) -> String {
    format!(
        "wave {} ({}), {}: {} of {} confirmed, {} failed, {} pending",
        w.index,
        w.label,
        if w.open { "open" } else { "not open yet" },
        w.confirmed,
        w.targeted,
        w.failed,
        w.pending
    )
}

fn state_cell(r: &v1::RolloutStatus) -> String {
    let reason = if r.pause_reason.is_empty() {
        String::new()
    } else {
        format!(r#" <span class="reason">({})</span>"#, esc(&r.pause_reason))
    };
    format!(
        r#"<span class="state-{state}" id="state-{id}">{state}</span>{reason}"#,
        state = esc(&r.state),
        id = esc(&r.rollout_id),
    )
}

/// The legend under wave bars.
const WAVE_LEGEND: &str = r#"<p class="legend"><span class="key confirmed"></span>confirmed <span class="key failed"></span>failed <span class="key pending"></span>pending</p>"#;

/// The updates page's list of rollouts, newest first, each with one bar per wave.
pub async fn section(caller: &Caller<'_>, user: &LoggedIn) -> String {
    let list = match caller
        .list_rollouts(v1::ListRolloutsRequest {
            product_id: 0,
            limit: LIST_LIMIT,
        })
        .await
    {
        Ok(list) => list,
        Err(status) => return html::refusal(&status),
    };
    if list.rollouts.is_empty() {
        return String::from(
            "<h2>Staged rollouts</h2><p>No staged rollout yet (<code>flashgate update rollout</code> starts one).</p>",
        );
    }
    let mut out = format!(
        r#"<h2>Staged rollouts</h2>{WAVE_LEGEND}<div class="scroll"><table data-live="rollouts" class="rollouts"><caption>Newest first (at most {LIST_LIMIT})</caption><thead><tr><th scope="col">Rollout</th><th scope="col">Product</th><th scope="col">Version</th><th scope="col">State</th><th scope="col">Waves (confirmed / targeted)</th><th scope="col">Started</th><th scope="col">Actions</th></tr></thead><tbody>"#
    );
    for r in &list.rollouts {
        let mut waves = String::new();
        for w in &r.waves {
            let _ = write!(
                waves,
                r#"<div class="waverow"><span class="wavename">{index}. {label}</span>{bar}<span class="num" id="count-{id}-{index}">{confirmed}/{targeted}</span></div>"#,
                index = w.index,
                label = esc(&w.label),
                bar = wave_bar(&r.rollout_id, w),
                id = esc(&r.rollout_id),
                confirmed = w.confirmed,
                targeted = w.targeted,
            );
        }
        let _ = write!(
            out,
            r#"<tr data-rollout="{id}"><th scope="row"><a href="/updates/rollouts/{id}"><code>{id}</code></a></th><td class="num" data-label="Product">{product}</td><td class="num" data-label="Version">{version}</td><td data-label="State">{state}</td><td class="waves" data-label="Waves">{waves}</td><td data-label="Started">{started}</td><td class="actions" data-label="Actions">{controls}</td></tr>"#,
            id = esc(&r.rollout_id),
            product = r.product_id,
            version = r.version,
            state = state_cell(r),
            started = time(r.created_at_ms),
            controls = controls(user, r),
        );
    }
    out.push_str("</tbody></table></div>");
    if list.truncated {
        out.push_str(&html::not_available(
            "older rollouts: `flashgate update list --limit N` lists more",
        ));
    }
    out
}

fn threshold_text(t: Option<&v1::FailureThreshold>) -> String {
    use v1::failure_threshold::Limit;
    match t.and_then(|t| t.limit) {
        Some(Limit::Percent(p)) => format!("{p}% of the devices of open waves"),
        Some(Limit::Count(c)) => format!("{c} failures"),
        None => "-".into(),
    }
}

/// `GET /updates/rollouts/{id}`: one rollout, its waves and its controls.
pub async fn rollout(
    State(console): State<Shared>,
    user: LoggedIn,
    Path(rollout_id): Path<String>,
) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let title = format!("Rollout {rollout_id}");
    let body = match caller
        .rollout(v1::RolloutRequest {
            rollout_id: rollout_id.clone(),
        })
        .await
    {
        Err(status) => html::refusal(&status),
        Ok(r) => {
            let mut body = format!(
                r#"<div data-live="rollouts" data-rollout="{id}"><dl><dt>State</dt><dd>{state}</dd><dt>Product</dt><dd>{product}</dd><dt>Version</dt><dd>{version}</dd><dt>Open waves</dt><dd id="open-{id}">{open} of {total}</dd><dt>Failure threshold</dt><dd>{threshold}</dd><dt>A wave passes</dt><dd>{gate}</dd><dt>Failures accepted by resumes</dt><dd>{accepted}</dd><dt>Started</dt><dd>{created}</dd><dt>Last change</dt><dd>{updated}</dd></dl>
<p class="actions">{controls}</p>{WAVE_LEGEND}<div class="scroll"><table><caption>Waves</caption><thead><tr><th scope="col">Wave</th><th scope="col">Reaches</th><th scope="col">Open</th><th scope="col">Progress</th><th scope="col">Targeted</th><th scope="col">Confirmed</th><th scope="col">Failed</th><th scope="col">Pending</th><th scope="col">Superseded</th></tr></thead><tbody>"#,
                id = esc(&r.rollout_id),
                state = state_cell(&r),
                product = r.product_id,
                version = r.version,
                open = r.open_waves,
                total = r.waves.len(),
                threshold = threshold_text(r.failure_threshold.as_ref()),
                gate = if r.min_confirmed == 0 {
                    "once each of its devices confirmed or failed".to_owned()
                } else {
                    format!("once {} of its devices confirmed", r.min_confirmed)
                },
                accepted = r.accepted_failures,
                created = time(r.created_at_ms),
                updated = time(r.updated_at_ms),
                controls = controls(&user, &r),
            );
            for w in &r.waves {
                let cell = |field: &str, value: u32| {
                    format!(
                        r#"<td class="num" id="{field}-{id}-{index}">{value}</td>"#,
                        id = esc(&r.rollout_id),
                        index = w.index
                    )
                };
                let _ = write!(
                    body,
                    r#"<tr><th scope="row">{index}</th><td>{label}</td><td id="isopen-{id}-{index}">{open}</td><td class="barcell">{bar}</td>{targeted}{confirmed}{failed}{pending}{superseded}</tr>"#,
                    index = w.index,
                    label = esc(&w.label),
                    id = esc(&r.rollout_id),
                    open = if w.open { "yes" } else { "no" },
                    bar = wave_bar(&r.rollout_id, w),
                    targeted = cell("targeted", w.targeted),
                    confirmed = cell("confirmed", w.confirmed),
                    failed = cell("failed", w.failed),
                    pending = cell("pending", w.pending),
                    superseded = cell("superseded", w.superseded),
                );
            }
            body.push_str("</tbody></table></div></div>");
            body
        }
    };
    let body = format!(r#"{body}<p><a href="/updates">All updates</a></p>"#);
    Html(html::page(&title, "/updates", Some(&user.chrome()), &body))
}

/// `GET /updates/rollouts/{id}/{pause|resume}`: the confirmation page.
pub async fn confirm(
    State(console): State<Shared>,
    user: LoggedIn,
    Path((rollout_id, verb)): Path<(String, String)>,
) -> Response {
    let Some(verb) = Verb::parse(&verb) else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    let back = format!("/updates/rollouts/{rollout_id}");
    let r = match console
        .api
        .caller(&user.session.credentials)
        .rollout(v1::RolloutRequest {
            rollout_id: rollout_id.clone(),
        })
        .await
    {
        Ok(r) => r,
        Err(status) => return refused_page(&user, "Rollouts", &back, &status),
    };
    let open: u32 = r.waves.iter().filter(|w| w.open).map(|w| w.targeted).sum();
    let body = format!(
        r#"<form method="post" action="/updates/rollouts/{id}/{verb}" class="confirm">{csrf}
<p>{Verb} rollout <code>{id}</code> — version {version} of product {product}, now {state}, {waves} waves ({open} devices in open waves)? {consequence}</p>
<p><button type="submit" autofocus>Yes, {verb}</button> <a href="{back}">Cancel</a></p>
</form>"#,
        id = esc(&r.rollout_id),
        verb = verb.word(),
        Verb = verb.label(),
        version = r.version,
        product = r.product_id,
        state = esc(&r.state),
        waves = r.waves.len(),
        consequence = verb.consequence(),
        csrf = csrf_field(&user.session.csrf),
        back = esc(&back),
    );
    let title = format!("{} rollout?", verb.label());
    Html(html::page(&title, "/updates", Some(&user.chrome()), &body)).into_response()
}

/// `POST /updates/rollouts/{id}/{pause|resume}`: the confirmed action.
pub async fn act(
    State(console): State<Shared>,
    user: LoggedIn,
    Path((rollout_id, verb)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(verb) = Verb::parse(&verb) else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    if !user.session.csrf_ok(&form.csrf) {
        return stale_form(&user);
    }
    let back = format!("/updates/rollouts/{rollout_id}");
    let caller = console.api.caller(&user.session.credentials);
    let request = v1::RolloutRequest { rollout_id };
    let result = match verb {
        Verb::Pause => caller.pause_rollout(request).await,
        Verb::Resume => caller.resume_rollout(request).await,
    };
    match result {
        Ok(r) => Redirect::to(&format!("/updates/rollouts/{}", r.rollout_id)).into_response(),
        Err(status) => refused_page(&user, "Rollout action refused", &back, &status),
    }
}

/// One rollout's live counts.
#[derive(serde::Serialize)]
struct LiveRollout<'a> {
    id: &'a str,
    state: &'a str,
    open_waves: u32,
    waves: Vec<LiveWave>,
}

#[derive(serde::Serialize)]
struct LiveWave {
    index: u32,
    open: bool,
    targeted: u32,
    confirmed: u32,
    failed: u32,
    pending: u32,
    superseded: u32,
    label: String,
}

/// `GET /live/rollouts.json`: `{"rollouts":[{"id", "state", "open_waves", "waves":[{"index",
/// "open", "targeted", "confirmed", "failed", "pending", "superseded", "label"}]}]}` for the
/// rollouts the updates page lists, or the API's refusal with its status.
pub async fn live(State(console): State<Shared>, user: LoggedIn) -> Response {
    let caller = console.api.caller(&user.session.credentials);
    match caller
        .list_rollouts(v1::ListRolloutsRequest {
            product_id: 0,
            limit: LIST_LIMIT,
        })
        .await
    {
        Ok(list) => {
            let rollouts: Vec<LiveRollout<'_>> = list
                .rollouts
                .iter()
                .map(|r| LiveRollout {
                    id: &r.rollout_id,
                    state: &r.state,
                    open_waves: r.open_waves,
                    waves: r
                        .waves
                        .iter()
                        .map(|w| LiveWave {
                            index: w.index,
                            open: w.open,
                            targeted: w.targeted,
                            confirmed: w.confirmed,
                            failed: w.failed,
                            pending: w.pending,
                            superseded: w.superseded,
                            label: wave_label(w),
                        })
                        .collect(),
                })
                .collect();
            Json(serde_json::json!({ "rollouts": rollouts })).into_response()
        }
        Err(status) => refused_json(&status),
    }
}

/// The API's refusal as the live JSON carries it.
pub fn refused_json(status: &Status) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "refused": status.message() })),
    )
        .into_response()
}
