//! What operators look at: one handler per page, each a few API calls rendered as tables.
//! A call the API refuses shows its refusal in place of the table.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use flashgate_proto::v1::{self, StationState};

use super::html::{self, esc, hex_or_dash, time, Progress};
use super::{LoggedIn, Shared};
use crate::access::Role;

/// Devices shown on list pages at most.
const LIST_LIMIT: u32 = 200;
/// The stations page draws installs per hour over this many hours.
const HOURS: i64 = 24;
const HOUR_MS: i64 = 3_600_000;

fn render(user: &LoggedIn, title: &str, current: &str, body: &str) -> Html<String> {
    Html(html::page(title, current, Some(&user.chrome()), body))
}

/// An order's counts.
pub fn progress(status: &v1::OrderStatus) -> Progress {
    Progress {
        ordered: status.order.as_ref().map_or(0, |o| o.count),
        consumed: status.consumed,
        failed: status.failed,
        reserved: status.reserved,
        remaining: status.remaining,
    }
}

fn order_id(status: &v1::OrderStatus) -> &str {
    status.order.as_ref().map_or("", |o| o.order_id.as_str())
}

/// `GET /orders`: every order with its progress; `console.js` refreshes the counts.
pub async fn orders(State(console): State<Shared>, user: LoggedIn) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let mut body = String::from(if user.session.operator.may(Role::Orders) {
        r#"<p class="actions"><a class="button" href="/orders/new">New order</a></p>"#
    } else {
        r#"<p class="actions"><button type="button" disabled title="needs the orders role">New order</button> <span class="muted">(needs the orders role)</span></p>"#
    });
    match caller.list_orders(v1::ListOrdersRequest {}).await {
        Err(status) => body.push_str(&html::refusal(&status)),
        Ok(list) if list.orders.is_empty() => body.push_str("<p>No orders yet.</p>"),
        Ok(list) => {
            body.push_str(html::PROGRESS_LEGEND);
            body.push_str(
                r#"<div class="scroll"><table data-live="orders"><caption>Orders and their quota</caption>
<thead><tr><th scope="col">Order</th><th scope="col">Product</th><th scope="col">Factory</th><th scope="col">Progress</th><th scope="col">Ordered</th><th scope="col">Consumed</th><th scope="col">Failed</th><th scope="col">Reserved</th><th scope="col">Remaining</th><th scope="col">Leases</th></tr></thead><tbody>"#,
            );
            for status in &list.orders {
                let id = order_id(status);
                let order = status.order.clone().unwrap_or_default();
                let _ = write!(
                    body,
                    r#"<tr><th scope="row"><a href="/orders/{href}">{id}</a></th><td>{product}</td><td>{factory}</td><td class="barcell">{bar}</td>{counts}<td data-field="active_leases">{leases}</td></tr>"#,
                    href = esc(id),
                    id = esc(id),
                    product = order.product_id,
                    factory = esc(&order.factory),
                    bar = html::progress_bar(id, &progress(status)),
                    counts = count_cells(id, &progress(status)),
                    leases = status.active_leases,
                );
            }
            body.push_str("</tbody></table></div>");
        }
    }
    render(&user, "Orders", "/orders", &body)
}

/// The five count cells of an order row, each with an id `console.js` updates.
fn count_cells(id: &str, p: &Progress) -> String {
    let mut cells = String::new();
    for (field, value) in [
        ("ordered", p.ordered),
        ("consumed", p.consumed),
        ("failed", p.failed),
        ("reserved", p.reserved),
        ("remaining", p.remaining),
    ] {
        let _ = write!(
            cells,
            r#"<td class="num" id="{field}-{id}">{value}</td>"#,
            id = esc(id)
        );
    }
    cells
}

/// `GET /orders/{id}`: one order, its leases and its devices.
pub async fn order(
    State(console): State<Shared>,
    user: LoggedIn,
    Path(order_id): Path<String>,
) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let mut body = String::new();
    match caller
        .order_status(v1::GetOrderStatusRequest {
            order_id: order_id.clone(),
        })
        .await
    {
        Err(status) => body.push_str(&html::refusal(&status)),
        Ok(status) => {
            let order = status.order.clone().unwrap_or_default();
            let p = progress(&status);
            let stations = if order.station_ids.is_empty() {
                "any approved station of the factory".to_owned()
            } else {
                order.station_ids.join(", ")
            };
            let _ = write!(
                body,
                r#"<div data-live="orders">{bar}{legend}<div class="scroll"><table><caption>Quota</caption><thead><tr><th scope="col">Ordered</th><th scope="col">Consumed</th><th scope="col">Failed</th><th scope="col">Reserved</th><th scope="col">Remaining</th></tr></thead><tbody><tr>{counts}</tr></tbody></table></div></div>
<dl><dt>Product</dt><dd>{product}</dd><dt>Factory</dt><dd>{factory}</dd><dt>Stations</dt><dd>{stations}</dd><dt>Bootloader</dt><dd><code>{boot}</code></dd><dt>Test app</dt><dd><code>{test}</code></dd><dt>Created</dt><dd>{created}</dd></dl>"#,
                bar = html::progress_bar(&order.order_id, &p),
                legend = html::PROGRESS_LEGEND,
                counts = count_cells(&order.order_id, &p),
                product = order.product_id,
                factory = esc(&order.factory),
                stations = esc(&stations),
                boot = hex_or_dash(&order.bootloader_digest),
                test = hex_or_dash(&order.test_app_digest),
                created = time(order.created_at_ms),
            );
            body.push_str(&leases_table(&caller, &order_id).await);
            body.push_str(&html::not_available(
                "failures by reason: the API reports an order's failure count, not each failure's reason",
            ));
            let devices = caller
                .list_devices(v1::ListDevicesRequest {
                    order_id: order_id.clone(),
                    limit: LIST_LIMIT,
                    ..Default::default()
                })
                .await;
            body.push_str(&devices_table(devices, "Devices of this order"));
        }
    }
    render(&user, &format!("Order {order_id}"), "/orders", &body)
}

async fn leases_table(caller: &super::api::Caller<'_>, order_id: &str) -> String {
    let leases = match caller
        .list_leases(v1::ListLeasesRequest {
            order_id: order_id.to_owned(),
            station_id: String::new(),
        })
        .await
    {
        Ok(list) => list.leases,
        Err(status) => return html::refusal(&status),
    };
    let mut out = String::from(
        r#"<div class="scroll"><table><caption>Leases</caption><thead><tr><th scope="col">Lease</th><th scope="col">Station</th><th scope="col">State</th><th scope="col">Used / count</th><th scope="col">Released</th><th scope="col">Issued</th><th scope="col">Until</th></tr></thead><tbody>"#,
    );
    for lease in &leases {
        let state = v1::LeaseState::try_from(lease.state).unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&lease.lease_id),
            esc(&lease.station_id),
            state_word(state.as_str_name()),
            lease.used,
            lease.count,
            lease.released,
            time(lease.issued_at_ms),
            time(lease.not_after_ms),
        );
    }
    if leases.is_empty() {
        out.push_str(r#"<tr><td colspan="7">No leases yet.</td></tr>"#);
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `LEASE_STATE_ACTIVE` → `active`.
fn state_word(name: &str) -> String {
    name.rsplit('_').next().unwrap_or(name).to_ascii_lowercase()
}

fn devices_table(devices: super::api::ApiResult<v1::ListDevicesResponse>, caption: &str) -> String {
    let devices = match devices {
        Ok(list) => list.devices,
        Err(status) => return html::refusal(&status),
    };
    let mut out = format!(
        r#"<div class="scroll"><table><caption>{}</caption><thead><tr><th scope="col">Serial</th><th scope="col">Product</th><th scope="col">Order</th><th scope="col">Station</th><th scope="col">Bootloader</th><th scope="col">Test</th><th scope="col">Installed</th></tr></thead><tbody>"#,
        esc(caption)
    );
    for d in &devices {
        let serial = hex::encode(&d.serial);
        let test = d.test_result.as_ref().map_or(0, |t| t.outcome);
        let test = v1::TestOutcome::try_from(test).unwrap_or_default();
        let _ = write!(
            out,
            r#"<tr><th scope="row"><a href="/devices/{product}/{serial}"><code>{serial}</code></a></th><td>{product}</td><td><a href="/orders/{order}">{order}</a></td><td><code>{station}</code></td><td class="num">{boot}</td><td>{test}</td><td>{installed}</td></tr>"#,
            product = d.product_id,
            order = esc(&d.order_id),
            station = esc(&d.station_id),
            boot = d.bootloader_version,
            test = state_word(test.as_str_name()),
            installed = time(d.installed_at_ms),
        );
    }
    if devices.is_empty() {
        out.push_str(r#"<tr><td colspan="7">No devices.</td></tr>"#);
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `GET /stations`: every station, its approval, its installs per hour over the last day,
/// and the approve / revoke actions.
pub async fn stations(State(console): State<Shared>, user: LoggedIn) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let now = flashgate_proto::clock::now_ms();
    let mut body = String::new();
    let stations = match caller
        .list_stations(v1::ListStationsRequest { state: 0 })
        .await
    {
        Ok(list) => list.stations,
        Err(status) => {
            body.push_str(&html::refusal(&status));
            return render(&user, "Stations", "/stations", &body);
        }
    };
    body.push_str(
        r#"<div class="scroll"><table><caption>Stations</caption><thead><tr><th scope="col">Station</th><th scope="col">Name</th><th scope="col">Factory</th><th scope="col">State</th><th scope="col">Enrolled</th><th scope="col">Approved</th><th scope="col">Last install</th><th scope="col">Installs per hour, last 24 h</th><th scope="col">Actions</th></tr></thead><tbody>"#,
    );
    for station in &stations {
        let state = StationState::try_from(station.state).unwrap_or_default();
        let recent = caller
            .list_devices(v1::ListDevicesRequest {
                station_id: station.station_id.clone(),
                from_ms: now - HOURS * HOUR_MS,
                ..Default::default()
            })
            .await
            .map(|l| l.devices);
        let (last, chart) = match &recent {
            Ok(devices) => (
                time(devices.iter().map(|d| d.installed_at_ms).max().unwrap_or(0)),
                per_hour_chart(devices, now),
            ),
            Err(status) => ("-".into(), html::refusal(status)),
        };
        let id = esc(&station.station_id);
        let actions = station_actions(&user, &id, state);
        let _ = write!(
            body,
            r#"<tr><th scope="row"><code>{id}</code></th><td>{name}</td><td>{factory}</td><td class="state-{word}">{word}</td><td>{enrolled}</td><td>{approved}</td><td>{last}</td><td>{chart}</td><td class="actions">{actions}</td></tr>"#,
            name = esc(&station.name),
            factory = esc(&station.factory),
            word = state_word(state.as_str_name()),
            enrolled = time(station.enrolled_at_ms),
            approved = time(station.approved_at_ms),
        );
    }
    if stations.is_empty() {
        body.push_str(r#"<tr><td colspan="9">No station has enrolled yet.</td></tr>"#);
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&html::not_available(
        "a station's last contact and its failures by reason: the API records installs, not \
         every call a station makes, and reports an order's failure count only",
    ));
    render(&user, "Stations", "/stations", &body)
}

/// Approve / revoke for an admin; for anyone else the same buttons disabled, saying why (the
/// API refuses them anyway: the console only does not offer what would be refused).
fn station_actions(user: &LoggedIn, id: &str, state: StationState) -> String {
    let admin = user.session.operator.may(Role::Admin);
    let mut actions = String::new();
    for (verb, label, class, shown) in [
        (
            "approve",
            "Approve",
            "button",
            state != StationState::Approved,
        ),
        (
            "revoke",
            "Revoke",
            "button danger",
            state != StationState::Revoked,
        ),
    ] {
        if !shown {
            continue;
        }
        let _ = if admin {
            write!(
                actions,
                r#"<a class="{class}" href="/stations/{id}/{verb}">{label}</a> "#
            )
        } else {
            write!(
                actions,
                r#"<button type="button" disabled title="needs the admin role">{label}</button> "#
            )
        };
    }
    if !admin {
        actions.push_str(r#"<span class="muted">(needs the admin role)</span>"#);
    }
    actions
}

/// Installs per hour over the last [`HOURS`] hours, oldest left, as SVG bars.
fn per_hour_chart(devices: &[v1::Device], now: i64) -> String {
    let mut buckets = [0u32; HOURS as usize];
    for d in devices {
        let age = (now - d.installed_at_ms).max(0) / HOUR_MS;
        if let Some(slot) = usize::try_from(HOURS - 1 - age)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        {
            *slot += 1;
        }
    }
    let peak = buckets.iter().copied().max().unwrap_or(0).max(1);
    let mut bars = String::new();
    for (i, n) in buckets.iter().enumerate() {
        let h = f64::from(*n) * 20.0 / f64::from(peak);
        let _ = write!(
            bars,
            r#"<rect x="{}" y="{:.2}" width="3" height="{h:.2}"><title>{n}</title></rect>"#,
            i * 4,
            20.0 - h
        );
    }
    format!(
        r#"<svg class="spark" role="img" aria-label="{total} installs in the last 24 hours, at most {peak} in one hour" viewBox="0 0 96 20">{bars}</svg>"#,
        total = devices.len(),
    )
}

/// The device search form's fields (all optional).
#[derive(serde::Deserialize, Default)]
pub struct DeviceQuery {
    #[serde(default)]
    serial: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    station: String,
    #[serde(default)]
    product: String,
}

/// `GET /devices?serial=&order=&station=&product=`: the search form and its results.
pub async fn devices(
    State(console): State<Shared>,
    user: LoggedIn,
    Query(query): Query<DeviceQuery>,
) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let mut body = format!(
        r#"<form method="get" action="/devices" class="search" role="search">
<div><label for="serial">Serial (32 hex)</label><input id="serial" name="serial" value="{serial}" autocomplete="off" spellcheck="false"></div>
<div><label for="order">Order</label><input id="order" name="order" value="{order}"></div>
<div><label for="station">Station</label><input id="station" name="station" value="{station}"></div>
<div><label for="product">Product id</label><input id="product" name="product" inputmode="numeric" value="{product}"></div>
<div><button type="submit">Search</button></div>
</form>"#,
        serial = esc(&query.serial),
        order = esc(&query.order),
        station = esc(&query.station),
        product = esc(&query.product),
    );
    let serial = query.serial.trim();
    let serial = if serial.is_empty() {
        Ok(Vec::new())
    } else {
        flashgate_proto::serial::from_hex(serial)
            .map(|s| s.to_vec())
            .ok_or("a serial is 32 hex characters")
    };
    let product = match query.product.trim() {
        "" => Ok(0),
        text => text.parse::<u32>().map_err(|_| "a product id is a number"),
    };
    match (serial, product) {
        (Ok(serial), Ok(product_id)) => {
            let devices = caller
                .list_devices(v1::ListDevicesRequest {
                    product_id,
                    order_id: query.order.trim().to_owned(),
                    station_id: query.station.trim().to_owned(),
                    serial,
                    limit: LIST_LIMIT,
                    ..Default::default()
                })
                .await;
            body.push_str(&devices_table(
                devices,
                &format!("Devices (at most {LIST_LIMIT})"),
            ));
        }
        (Err(problem), _) | (_, Err(problem)) => {
            let _ = write!(body, r#"<p class="refused" role="alert">{problem}</p>"#);
        }
    }
    render(&user, "Devices", "/devices", &body)
}

/// `GET /devices/{product}/{serial}`: the registry's record, the update status and recent data.
pub async fn device(
    State(console): State<Shared>,
    user: LoggedIn,
    Path((product_id, serial_hex)): Path<(u32, String)>,
) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let title = format!("Device {serial_hex}");
    let Some(serial) = flashgate_proto::serial::from_hex(&serial_hex) else {
        let body = r#"<p class="refused" role="alert">A serial is 32 hex characters.</p>"#;
        return render(&user, &title, "/devices", body);
    };
    let mut body = String::new();
    match caller
        .device(v1::GetDeviceRequest {
            product_id,
            serial: serial.to_vec(),
        })
        .await
    {
        Err(status) => body.push_str(&html::refusal(&status)),
        Ok(d) => {
            let test = d.test_result.clone().unwrap_or_default();
            let outcome = v1::TestOutcome::try_from(test.outcome).unwrap_or_default();
            let _ = write!(
                body,
                r#"<h2>Registry</h2><dl><dt>Product</dt><dd>{product}</dd><dt>Order</dt><dd><a href="/orders/{order}">{order}</a></dd><dt>Station</dt><dd><code>{station}</code></dd><dt>Lease</dt><dd><code>{lease}</code></dd><dt>Bootloader version</dt><dd>{boot}</dd><dt>Installed</dt><dd>{installed}</dd><dt>Registered</dt><dd>{registered}</dd><dt>Factory test</dt><dd>{outcome}</dd></dl>"#,
                product = d.product_id,
                order = esc(&d.order_id),
                station = esc(&d.station_id),
                lease = esc(&d.lease_id),
                boot = d.bootloader_version,
                installed = time(d.installed_at_ms),
                registered = time(d.registered_at_ms),
                outcome = state_word(outcome.as_str_name()),
            );
            if !test.log.is_empty() {
                let _ = write!(
                    body,
                    "<details><summary>Test log</summary><pre>{}</pre></details>",
                    esc(&test.log)
                );
            }
            if !d.clone_evidence.is_empty() {
                let items: String = d
                    .clone_evidence
                    .iter()
                    .map(|e| format!("<li>{}</li>", esc(e)))
                    .collect();
                let _ = write!(
                    body,
                    r#"<h2>Clone evidence</h2><ul class="refused" role="alert">{items}</ul>"#
                );
            }
        }
    }
    body.push_str("<h2>Updates</h2>");
    match caller
        .device_update(v1::GetDeviceStatusRequest {
            product_id,
            serial: serial.to_vec(),
        })
        .await
    {
        Err(status) => body.push_str(&html::refusal(&status)),
        Ok(u) => {
            let _ = write!(
                body,
                r#"<dl><dt>State</dt><dd>{state}</dd><dt>Campaign</dt><dd>{campaign}</dd><dt>Target version</dt><dd>{target}</dd><dt>OS version</dt><dd>{os}</dd><dt>Rollback floor</dt><dd>{floor}</dd><dt>Last outcome</dt><dd>{outcome}</dd><dt>Last update</dt><dd>{updated}</dd><dt>Last seen</dt><dd>{seen}</dd></dl>"#,
                state = esc(&u.state),
                campaign = esc(if u.campaign_id.is_empty() {
                    "-"
                } else {
                    &u.campaign_id
                }),
                target = u.target_version,
                os = if u.os_version == 0 {
                    "not known yet".into()
                } else {
                    u.os_version.to_string()
                },
                floor = u.rollback_floor,
                outcome = esc(if u.last_outcome.is_empty() {
                    "-"
                } else {
                    &u.last_outcome
                }),
                updated = time(u.updated_at_ms),
                seen = time(u.last_seen_ms),
            );
        }
    }
    body.push_str(&html::not_available(
        "certificate fields: devices prove their identity with a key shared with the coordinator, \
         there is no device certificate in the API",
    ));
    body.push_str("<h2>Recent data</h2>");
    match caller
        .records(v1::QueryRecordsRequest {
            serial: serial.to_vec(),
            limit: 10,
            ..Default::default()
        })
        .await
    {
        Err(status) => body.push_str(&html::refusal(&status)),
        Ok(list) => {
            body.push_str(r#"<div class="scroll"><table><caption>The last 10 sealed records, opened</caption><thead><tr><th scope="col">Received</th><th scope="col">Kind</th><th scope="col">Epoch / counter</th><th scope="col">Source</th><th scope="col">Body</th></tr></thead><tbody>"#);
            for r in &list.records {
                let kind = match r.kind {
                    1 => "telemetry",
                    2 => "rotation",
                    _ => "other",
                };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{kind}</td><td class=\"num\">{} / {}</td><td>{}</td><td><code>{}</code></td></tr>",
                    time(r.received_at_ms),
                    r.epoch,
                    r.counter,
                    esc(&r.source),
                    esc(&String::from_utf8_lossy(&r.body)),
                );
            }
            if list.records.is_empty() {
                body.push_str(r#"<tr><td colspan="5">No records.</td></tr>"#);
            }
            body.push_str("</tbody></table></div>");
        }
    }
    render(&user, &title, "/devices", &body)
}

/// `GET /updates`: the staged rollouts with their waves, then each campaign of each product
/// with its devices counted by state.
pub async fn updates(State(console): State<Shared>, user: LoggedIn) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let mut body = super::rollouts::section(&caller, &user).await;
    body.push_str("<h2>Campaigns</h2>");
    let products = match caller.list_products(v1::ListProductsRequest {}).await {
        Ok(list) => list.products,
        Err(status) => {
            body.push_str(&html::refusal(&status));
            return render(&user, "Updates", "/updates", &body);
        }
    };
    const STATES: [&str; 5] = [
        "pending",
        "in-progress",
        "updated",
        "rolled-back",
        "refused",
    ];
    body.push_str(r#"<div class="scroll"><table><caption>Devices by state, per campaign</caption><thead><tr><th scope="col">Campaign</th><th scope="col">Product</th><th scope="col">Target version</th><th scope="col">Devices</th>"#);
    for state in STATES {
        let _ = write!(body, r#"<th scope="col">{state}</th>"#);
    }
    body.push_str("</tr></thead><tbody>");
    let mut rows = 0;
    for product in &products {
        let devices = match caller
            .update_status(v1::GetUpdateStatusRequest {
                product_id: product.product_id,
                campaign_id: String::new(),
            })
            .await
        {
            Ok(list) => list.devices,
            Err(status) => {
                let _ = write!(
                    body,
                    r#"<tr><td colspan="9">{}</td></tr>"#,
                    html::refusal(&status)
                );
                continue;
            }
        };
        let mut campaigns: BTreeMap<&str, (u32, BTreeMap<&str, u32>, u32)> = BTreeMap::new();
        for d in devices.iter().filter(|d| !d.campaign_id.is_empty()) {
            let entry = campaigns.entry(&d.campaign_id).or_default();
            entry.0 = entry.0.max(d.target_version);
            *entry.1.entry(d.state.as_str()).or_default() += 1;
            entry.2 += 1;
        }
        for (campaign, (version, states, total)) in &campaigns {
            rows += 1;
            let _ = write!(
                body,
                r#"<tr><th scope="row"><code>{}</code></th><td>{} ({})</td><td class="num">{version}</td><td class="num">{total}</td>"#,
                esc(campaign),
                product.product_id,
                esc(&product.name),
            );
            for state in STATES {
                let _ = write!(
                    body,
                    r#"<td class="num">{}</td>"#,
                    states.get(state).copied().unwrap_or(0)
                );
            }
            body.push_str("</tr>");
        }
    }
    if rows == 0 {
        body.push_str(r#"<tr><td colspan="9">No update campaign yet.</td></tr>"#);
    }
    body.push_str("</tbody></table></div>");
    render(&user, "Updates", "/updates", &body)
}

/// How many entries of each chain the audit page shows.
const AUDIT_PER_CHAIN: u32 = 50;

/// `GET /audit`: the newest entries of every chain, newest first, and whether the chains
/// verify.
pub async fn audit(State(console): State<Shared>, user: LoggedIn) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let mut body = match caller.verify_audit(v1::VerifyAuditRequest {}).await {
        Err(status) => html::refusal(&status),
        Ok(v) if v.ok => format!(
            r#"<p class="ok">The audit log verifies: {} entries in {} chains, every MAC, link and head intact.</p>"#,
            v.entries, v.chains
        ),
        Ok(v) => {
            let mut out = format!(
                r#"<div class="refused" role="alert"><p>The audit log does not verify ({} problems):</p><ul>"#,
                v.problems.len()
            );
            for p in &v.problems {
                let _ = write!(out, "<li>{}</li>", esc(p));
            }
            out.push_str("</ul></div>");
            out
        }
    };
    match caller
        .audit_entries(v1::ListAuditEntriesRequest {
            scope: String::new(),
            limit: AUDIT_PER_CHAIN,
        })
        .await
    {
        Err(status) => body.push_str(&html::refusal(&status)),
        Ok(list) => {
            let mut entries = list.entries;
            entries.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(b.seq.cmp(&a.seq)));
            let _ = write!(
                body,
                r#"<div class="scroll"><table><caption>Newest entries ({AUDIT_PER_CHAIN} per chain at most)</caption><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">To what</th><th scope="col">Detail</th><th scope="col">Chain</th></tr></thead><tbody>"#
            );
            for e in &entries {
                let _ = write!(
                    body,
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code> #{}</td></tr>"#,
                    time(e.at_ms),
                    esc(&e.actor),
                    esc(&e.action),
                    esc(&e.subject),
                    esc(&e.detail),
                    esc(&e.scope),
                    e.seq
                );
            }
            if entries.is_empty() {
                body.push_str(r#"<tr><td colspan="6">No entries yet.</td></tr>"#);
            }
            body.push_str("</tbody></table></div>");
        }
    }
    render(&user, "Audit trail", "/audit", &body)
}

/// `GET /ingest`: the data ingest's accepted count and refusals by reason.
pub async fn ingest(State(console): State<Shared>, user: LoggedIn) -> Html<String> {
    let caller = console.api.caller(&user.session.credentials);
    let body = match caller.ingest_stats(v1::GetIngestStatsRequest {}).await {
        Err(status) => html::refusal(&status),
        Ok(stats) => {
            let mut out = format!(
                r#"<p>Records accepted since the coordinator started: <strong>{}</strong></p><div class="scroll"><table><caption>Refusals by reason since the coordinator started</caption><thead><tr><th scope="col">Reason</th><th scope="col">Code</th><th scope="col">Count</th></tr></thead><tbody>"#,
                stats.accepted
            );
            for r in &stats.rejected {
                let _ = write!(
                    out,
                    r#"<tr><td>{}</td><td><code>{:#06x}</code></td><td class="num">{}</td></tr>"#,
                    esc(&r.reason),
                    r.error_code,
                    r.count
                );
            }
            if stats.rejected.is_empty() {
                out.push_str(r#"<tr><td colspan="3">No refusals.</td></tr>"#);
            }
            out.push_str("</tbody></table></div>");
            out
        }
    };
    render(&user, "Data ingest", "/ingest", &body)
}
