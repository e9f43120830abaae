//! What operators do: log in and out, approve or revoke a station, create an order (pausing and
//! resuming a rollout is `rollouts.rs`). Each
//! action is a form carrying the session's CSRF token, shown first on a confirmation page; the
//! API decides whether the operator may do it and its refusal is shown as it is.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use flashgate_proto::operator_auth::OperatorCredentials;
use flashgate_proto::v1::{self, ImageKind};
use tonic::{Code, Status};

use super::html::{self, csrf_field, esc};
use super::sessions;
use super::{LoggedIn, Shared};
use crate::access::Role;

/// The HTTP status a page showing the API's refusal goes out with.
fn http_status(status: &Status) -> StatusCode {
    match status.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A page showing the API's refusal (or the console's own), with a link back.
pub(super) fn refused_page(user: &LoggedIn, title: &str, back: &str, status: &Status) -> Response {
    let body = format!(
        r#"{}<p><a href="{}">Back</a></p>"#,
        html::refusal(status),
        esc(back)
    );
    (
        http_status(status),
        Html(html::page(title, "", Some(&user.chrome()), &body)),
    )
        .into_response()
}

/// A form whose CSRF token is not the session's: made by another site, or from an old session.
pub(super) fn stale_form(user: &LoggedIn) -> Response {
    let body = r#"<div class="refused" role="alert"><p>This form is not from your current session (its CSRF token does not match). Reload the page and try again.</p></div>"#;
    (
        StatusCode::FORBIDDEN,
        Html(html::page("Form refused", "", Some(&user.chrome()), body)),
    )
        .into_response()
}

fn login_form(message: &str) -> String {
    html::page(
        "Log in",
        "",
        None,
        &format!(
            r#"{message}<form method="post" action="/login" class="login">
<p>Paste your operator token (the one <code>flashgate --token</code> or <code>FLASHGATE_TOKEN</code> takes), or choose your token file. It is kept in the coordinator's memory for this session only.</p>
<div><label for="token">Operator token</label><input id="token" name="token" type="password" autocomplete="off" required></div>
<div><label for="token-file">or token file</label><input id="token-file" type="file"></div>
<div><button type="submit">Log in</button></div>
</form>"#
        ),
    )
}

/// `GET /login`.
pub async fn login_page() -> Html<String> {
    Html(login_form(""))
}

/// The login form.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: checks the token with one API call, then starts a session.
pub async fn login(State(console): State<Shared>, Form(form): Form<LoginForm>) -> Response {
    let refuse = |code: StatusCode, message: &str| {
        (
            code,
            Html(login_form(&format!(
                r#"<div class="refused" role="alert"><p>{}</p></div>"#,
                esc(message)
            ))),
        )
            .into_response()
    };
    let token = form.token.trim();
    if token.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Paste a token or choose a token file.",
        );
    }
    let credentials = match OperatorCredentials::bearer(token) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let info = match console
        .api
        .caller(&credentials)
        .info(v1::GetCoordinatorInfoRequest {})
        .await
    {
        Ok(info) => info,
        Err(status) => {
            return refuse(
                http_status(&status),
                &format!("The coordinator refused the token: {}", status.message()),
            )
        }
    };
    let operator = sessions::Operator {
        name: info.caller,
        role: Role::from_proto(info.caller_role),
    };
    let id = console.sessions.start(credentials, operator);
    let secure = if console.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        sessions::COOKIE,
        console.options.lifetimes.absolute.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/orders")).into_response()
}

/// A form with nothing but the CSRF token.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub(super) csrf: String,
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(
    State(console): State<Shared>,
    user: LoggedIn,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !user.session.csrf_ok(&form.csrf) {
        return stale_form(&user);
    }
    console.sessions.end(&user.id);
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        sessions::COOKIE
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// What a station action does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StationVerb {
    Approve,
    Revoke,
}

impl StationVerb {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "approve" => Some(Self::Approve),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Revoke => "revoke",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Self::Approve => "It will be able to take leases on the orders of its factory.",
            Self::Revoke => {
                "It will get no new lease and its reports will be refused; this cannot be undone \
                 from the station's side."
            }
        }
    }
}

/// `GET /stations/{id}/{approve|revoke}`: the confirmation page.
pub async fn confirm_station(
    State(console): State<Shared>,
    user: LoggedIn,
    Path((station_id, verb)): Path<(String, String)>,
) -> Response {
    let Some(verb) = StationVerb::parse(&verb) else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    let caller = console.api.caller(&user.session.credentials);
    let station = match caller
        .list_stations(v1::ListStationsRequest { state: 0 })
        .await
    {
        Ok(list) => list
            .stations
            .into_iter()
            .find(|s| s.station_id == station_id),
        Err(status) => return refused_page(&user, "Stations", "/stations", &status),
    };
    let Some(station) = station else {
        return refused_page(
            &user,
            "Stations",
            "/stations",
            &Status::not_found(format!("no station {station_id}")),
        );
    };
    let title = format!("{} station?", capitalised(verb.word()));
    let body = format!(
        r#"<form method="post" action="/stations/{id}/{verb}" class="confirm">{csrf}
<p>{Verb} station <code>{id}</code> — “{name}” of factory “{factory}”? {consequence}</p>
<p><button type="submit" class="{class}" autofocus>Yes, {verb}</button> <a href="/stations">Cancel</a></p>
</form>"#,
        id = esc(&station.station_id),
        verb = verb.word(),
        Verb = capitalised(verb.word()),
        name = esc(&station.name),
        factory = esc(&station.factory),
        consequence = verb.consequence(),
        csrf = csrf_field(&user.session.csrf),
        class = if verb == StationVerb::Revoke {
            "danger"
        } else {
            ""
        },
    );
    Html(html::page(&title, "/stations", Some(&user.chrome()), &body)).into_response()
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// `POST /stations/{id}/{approve|revoke}`: the confirmed action.
pub async fn station_action(
    State(console): State<Shared>,
    user: LoggedIn,
    Path((station_id, verb)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(verb) = StationVerb::parse(&verb) else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    if !user.session.csrf_ok(&form.csrf) {
        return stale_form(&user);
    }
    let caller = console.api.caller(&user.session.credentials);
    let result = match verb {
        StationVerb::Approve => {
            caller
                .approve_station(v1::ApproveStationRequest { station_id })
                .await
        }
        StationVerb::Revoke => {
            caller
                .revoke_station(v1::RevokeStationRequest { station_id })
                .await
        }
    };
    match result {
        Ok(_) => Redirect::to("/stations").into_response(),
        Err(status) => refused_page(&user, "Station action refused", "/stations", &status),
    }
}

/// The order form, as typed (checked on the confirmation page, again by the API).
#[derive(serde::Deserialize, Default)]
pub struct OrderForm {
    csrf: String,
    product_id: String,
    bootloader: String,
    #[serde(default)]
    test_app: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    stations: String,
    factory: String,
    count: String,
    #[serde(default)]
    order_id: String,
}

impl OrderForm {
    /// The request, or what is wrong with the form.
    fn request(&self) -> Result<v1::CreateOrderRequest, String> {
        let product_id = self
            .product_id
            .trim()
            .parse()
            .map_err(|_| "choose a product".to_owned())?;
        let digest = |text: &str, what: &str| -> Result<Vec<u8>, String> {
            match hex::decode(text.trim()) {
                Ok(bytes) if bytes.len() == 32 => Ok(bytes),
                _ => Err(format!(
                    "the {what} is a release digest (64 hex characters)"
                )),
            }
        };
        let bootloader_digest = digest(&self.bootloader, "bootloader")?;
        let test_app_digest = if self.test_app.trim().is_empty() {
            Vec::new()
        } else {
            digest(&self.test_app, "test app")?
        };
        let count: u64 = self
            .count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| "the count is a whole number of devices, at least 1".to_owned())?;
        let os_release_digest = if self.os.trim().is_empty() {
            vec![]
        } else {
            digest(&self.os, "OS")?
        };
        Ok(v1::CreateOrderRequest {
            product_id,
            bootloader_digest,
            test_app_digest,
            os_release_digest,
            station_ids: self
                .stations
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            factory: self.factory.trim().to_owned(),
            count,
            order_id: self.order_id.trim().to_owned(),
        })
    }

    fn hidden_fields(&self) -> String {
        let mut out = String::new();
        for (name, value) in [
            ("product_id", &self.product_id),
            ("bootloader", &self.bootloader),
            ("test_app", &self.test_app),
            ("os", &self.os),
            ("stations", &self.stations),
            ("factory", &self.factory),
            ("count", &self.count),
            ("order_id", &self.order_id),
        ] {
            let _ = write!(
                out,
                r#"<input type="hidden" name="{name}" value="{}">"#,
                esc(value)
            );
        }
        out
    }
}

/// `GET /orders/new`: the order form, with the products and releases the API lists.
pub async fn new_order(State(console): State<Shared>, user: LoggedIn) -> Response {
    let caller = console.api.caller(&user.session.credentials);
    let products = match caller.list_products(v1::ListProductsRequest {}).await {
        Ok(list) => list.products,
        Err(status) => return refused_page(&user, "New order", "/orders", &status),
    };
    let releases = match caller
        .list_releases(v1::ListReleasesRequest { product_id: 0 })
        .await
    {
        Ok(list) => list.releases,
        Err(status) => return refused_page(&user, "New order", "/orders", &status),
    };
    let options = |kind: ImageKind| {
        let mut out = String::new();
        for r in releases.iter().filter(|r| r.kind == kind as i32) {
            let _ = write!(
                out,
                r#"<option value="{digest}">product {product} · v{version} · {short}…</option>"#,
                digest = hex::encode(&r.digest),
                product = r.product_id,
                version = r.version,
                short = hex::encode(r.digest.get(..6).unwrap_or_default()),
            );
        }
        out
    };
    let mut product_options = String::new();
    for p in &products {
        let _ = write!(
            product_options,
            r#"<option value="{id}">{id} · {name}</option>"#,
            id = p.product_id,
            name = esc(&p.name)
        );
    }
    let body = format!(
        r#"<form method="post" action="/orders/new/confirm" class="order">{csrf}
<div><label for="product_id">Product</label><select id="product_id" name="product_id" required>{product_options}</select></div>
<div><label for="bootloader">Bootloader release</label><select id="bootloader" name="bootloader" required>{boot}</select></div>
<div><label for="test_app">Factory test app</label><select id="test_app" name="test_app"><option value="">none</option>{test}</select></div>
<div><label for="os">OS the boards leave with</label><select id="os" name="os"><option value="">none</option>{os}</select></div>
<div><label for="factory">Factory</label><input id="factory" name="factory" required></div>
<div><label for="stations">Stations (ids, comma-separated; empty: any approved station of the factory)</label><input id="stations" name="stations" spellcheck="false"></div>
<div><label for="count">Devices</label><input id="count" name="count" type="number" min="1" step="1" required></div>
<div><label for="order_id">Order id (optional; generated when empty)</label><input id="order_id" name="order_id"></div>
<div><button type="submit">Review order</button> <a href="/orders">Cancel</a></div>
</form>"#,
        csrf = csrf_field(&user.session.csrf),
        boot = options(ImageKind::Bootloader),
        test = options(ImageKind::TestApp),
        os = options(ImageKind::Os),
    );
    Html(html::page(
        "New order",
        "/orders",
        Some(&user.chrome()),
        &body,
    ))
    .into_response()
}

/// The order a posted form asks for, or the page refusing it (a stale form, a bad field).
fn checked_order(
    user: &LoggedIn,
    form: &OrderForm,
) -> Result<v1::CreateOrderRequest, Box<Response>> {
    if !user.session.csrf_ok(&form.csrf) {
        return Err(Box::new(stale_form(user)));
    }
    form.request().map_err(|problem| {
        Box::new(refused_page(
            user,
            "New order",
            "/orders/new",
            &Status::invalid_argument(problem),
        ))
    })
}

/// `POST /orders/new/confirm`: what the order will be; nothing is created yet.
pub async fn confirm_order(user: LoggedIn, Form(form): Form<OrderForm>) -> Response {
    let request = match checked_order(&user, &form) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let stations = if request.station_ids.is_empty() {
        format!(
            "any approved station of factory “{}”",
            esc(&request.factory)
        )
    } else {
        esc(&request.station_ids.join(", "))
    };
    let body = format!(
        r#"<form method="post" action="/orders/create" class="confirm">{csrf}{hidden}
<p>Create an order for <strong>{count}</strong> devices of product {product}, at factory “{factory}”, for {stations}?</p>
<dl><dt>Bootloader</dt><dd><code>{boot}</code></dd><dt>Test app</dt><dd><code>{test}</code></dd><dt>OS</dt><dd><code>{os}</code></dd><dt>Order id</dt><dd>{id}</dd></dl>
<p>The factory will be able to make exactly this many devices.</p>
<p><button type="submit" autofocus>Yes, create the order</button> <a href="/orders">Cancel</a></p>
</form>"#,
        csrf = csrf_field(&user.session.csrf),
        hidden = form.hidden_fields(),
        count = request.count,
        product = request.product_id,
        factory = esc(&request.factory),
        boot = hex::encode(&request.bootloader_digest),
        test = html::hex_or_dash(&request.test_app_digest),
        os = html::hex_or_dash(&request.os_release_digest),
        id = if request.order_id.is_empty() {
            "generated".to_owned()
        } else {
            esc(&request.order_id)
        },
    );
    Html(html::page(
        "Create this order?",
        "/orders",
        Some(&user.chrome()),
        &body,
    ))
    .into_response()
}

/// `POST /orders/create`: the confirmed order.
pub async fn create_order(
    State(console): State<Shared>,
    user: LoggedIn,
    Form(form): Form<OrderForm>,
) -> Response {
    let request = match checked_order(&user, &form) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    match console
        .api
        .caller(&user.session.credentials)
        .create_order(request)
        .await
    {
        Ok(order) => Redirect::to(&format!("/orders/{}", order.order_id)).into_response(),
        Err(status) => refused_page(&user, "Order refused", "/orders/new", &status),
    }
}
