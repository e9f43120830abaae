//! The operations console: server-rendered pages over the operator API, on their own port
//! (`flashgate-coordinator serve --console-listen ADDR`), over HTTPS with the coordinator's
//! server certificate ([`transport`]).
//!
//! - [`api`]: the console is a *client* of the API — every page calls the operator services
//!   in-process with the logged-in operator's token, so refusals are the API's own;
//! - [`sessions`]: login keeps the token in memory only, behind a random session id in an
//!   HttpOnly, SameSite=Strict cookie; every form carries the session's CSRF token;
//! - [`pages`] (what operators look at), [`actions`] (what they do, each confirmed first),
//!   [`rollouts`] (staged rollouts: their pages, live counts, pause and resume),
//!   [`live`] (the JSON the pages poll every 2 s), [`html`] (layout and escaping).
//!
//! Nothing is fetched from elsewhere: the stylesheet and the small script are compiled in, and
//! the content security policy allows only this origin.

pub mod actions;
pub mod api;
pub mod html;
pub mod live;
pub mod pages;
pub mod rollouts;
pub mod sessions;
pub mod transport;

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::server::Transport;
pub use api::ConsoleApi;
use sessions::{Lifetimes, Session, Sessions};

/// How the console serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsoleOptions {
    /// How long sessions live.
    pub lifetimes: Lifetimes,
}

/// What every handler shares.
pub struct Console {
    api: ConsoleApi,
    sessions: Sessions,
    options: ConsoleOptions,
    /// Served over TLS: the session cookie is `Secure`.
    tls: bool,
}

type Shared = Arc<Console>;

/// The console's routes; `tls` says whether they are served over TLS.
pub fn router(api: ConsoleApi, options: ConsoleOptions, tls: bool) -> Router {
    let console = Arc::new(Console {
        api,
        sessions: Sessions::new(options.lifetimes),
        options,
        tls,
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/orders") }))
        .route("/login", get(actions::login_page).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/orders", get(pages::orders))
        .route("/orders/new", get(actions::new_order))
        .route("/orders/new/confirm", post(actions::confirm_order))
        .route("/orders/create", post(actions::create_order))
        .route("/orders/:order_id", get(pages::order))
        .route("/stations", get(pages::stations))
        .route(
            "/stations/:station_id/:verb",
            get(actions::confirm_station).post(actions::station_action),
        )
        .route("/devices", get(pages::devices))
        .route("/devices/:product_id/:serial", get(pages::device))
        .route("/updates", get(pages::updates))
        .route("/updates/rollouts/:rollout_id", get(rollouts::rollout))
        .route(
            "/updates/rollouts/:rollout_id/:verb",
            get(rollouts::confirm).post(rollouts::act),
        )
        .route("/audit", get(pages::audit))
        .route("/ingest", get(pages::ingest))
        .route("/live/orders.json", get(live::orders))
        .route("/live/rollouts.json", get(rollouts::live))
        .route("/assets/console.css", get(assets::css))
        .route("/assets/console.js", get(assets::js))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` resolves: HTTPS with the server
/// certificate of `transport`, plain HTTP only if it is [`Transport::InsecurePlaintext`].
pub async fn serve(
    api: ConsoleApi,
    options: ConsoleOptions,
    listener: TcpListener,
    transport: &Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = matches!(transport, Transport::Tls(_));
    transport::serve(router(api, options, tls), listener, transport, shutdown).await
}

/// Headers on every response: only this origin may supply scripts, styles, images and form
/// targets; no framing; nothing cached (pages show live counts and carry CSRF tokens).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A logged-in operator, or a redirect to the login page.
pub struct LoggedIn {
    /// The session id (the cookie's value).
    pub id: String,
    /// The session.
    pub session: Session,
}

#[axum::async_trait]
impl FromRequestParts<Shared> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Response> {
        parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(sessions::from_cookie_header)
            .and_then(|id| {
                let session = console.sessions.get(id)?;
                Some(LoggedIn {
                    id: id.to_owned(),
                    session,
                })
            })
            .ok_or_else(|| Redirect::to("/login").into_response())
    }
}

impl LoggedIn {
    /// The layout's view of the session.
    pub fn chrome(&self) -> html::Chrome<'_> {
        html::Chrome {
            csrf: &self.session.csrf,
        }
    }
}

/// The stylesheet and the script, compiled in.
mod assets {
    use axum::http::header;
    use axum::response::IntoResponse;

    pub(super) async fn css() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            include_str!("assets/console.css"),
        )
    }

    pub(super) async fn js() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            include_str!("assets/console.js"),
        )
    }
}
