//! The operations console in real headless Chromium (Debian's `chromium` through
//! `chromedriver`): log in, watch an order's bar move while a `flashgate-station` process
//! provisions emulated boards, approve a station, create an order, refusals, keyboard
//! navigation, both viewports, and no URL outside the coordinator; pause and resume a staged
//! rollout of simulated devices. Screenshots of every page go to `target/console-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use flashgate_coordinator::access::Role;
use flashgate_coordinator::console::{self, ConsoleApi, ConsoleOptions};
use flashgate_proto::v1::{self, update_service_client::UpdateServiceClient};
use flashgate_station::coordinator_client::CoordinatorClient;
use flashgate_station::identity::{StationIdentity, StationKek};
use flashgate_station::station::enrol;
use flashgate_tests::station_harness::{Factory, PRODUCT_ID};
use flashgate_tests::webdriver::{http as plain_http, https, Browser, ChromeDriver, ENTER, TAB};
use serde_json::json;

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The console of `factory`'s coordinator on a free loopback port, over HTTPS with the
/// coordinator's own certificate (as `serve --console-listen` does); its address.
fn start_console(factory: &Factory) -> String {
    let api = ConsoleApi::new(
        factory.coordinator.coordinator.clone(),
        factory.coordinator.data.clone(),
    );
    let listener = factory
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let transport = factory.coordinator.transport().clone();
    factory.rt.spawn(async move {
        console::serve(
            api,
            ConsoleOptions::default(),
            listener,
            &transport,
            std::future::pending(),
        )
        .await
    });
    addr
}

/// Chromium trusting the coordinator's CA, as an operator's browser would.
fn trusting_browser(factory: &Factory) -> ChromeDriver {
    ChromeDriver::start_trusting(&factory.coordinator.ca_pem)
}

/// A second station, enrolled but not approved; its id.
fn pending_station(factory: &Factory, dir: &std::path::Path) -> String {
    let kek = StationKek::generate();
    let identity = StationIdentity::load_or_create(dir, &kek).unwrap();
    factory.rt.block_on(async {
        let client = CoordinatorClient::new(
            &factory.coordinator.endpoint,
            &factory.coordinator.security(),
            identity.signer(),
        )
        .unwrap();
        enrol(&client, &identity, "line 2", "f1").await.unwrap();
    });
    identity.station_id()
}

fn log_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/login"));
    browser.type_into(&browser.find("#token"), token);
    browser.click(&browser.find("form.login button[type=submit]"));
    settled(
        browser,
        "location.pathname === '/orders' || document.querySelector('.refused') !== null",
    );
}

/// Waits until the page a click led to has loaded and `condition` holds (a click on a submit
/// button returns before the navigation ends).
fn settled(browser: &Browser, condition: &str) {
    let script = format!("return document.readyState === 'complete' && ({condition});");
    assert!(
        browser.wait_until(&script, Duration::from_secs(20)),
        "{} never met {condition}",
        browser.url()
    );
}

/// Every `src` and `href` of the page, and every resource it loaded, is on the console itself.
fn assert_only_local_urls(browser: &Browser, base: &str) {
    let urls = browser.execute(
        "return Array.from(document.querySelectorAll('[src],[href]'))
             .map(e => e.getAttribute('src') || e.getAttribute('href'))
             .concat(performance.getEntriesByType('resource').map(r => r.name));",
        json!([]),
    );
    for url in urls.as_array().unwrap() {
        let url = url.as_str().unwrap();
        let local = (url.starts_with('/') && !url.starts_with("//"))
            || url.starts_with('#')
            || url.starts_with(&format!("{base}/"));
        assert!(local, "{} references {url:?}", browser.url());
    }
}

/// The page fits the viewport's width (wide tables scroll inside their own box).
fn assert_fits(browser: &Browser) {
    let fits = browser.execute(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
        json!([]),
    );
    assert_eq!(
        fits,
        json!(true),
        "{} is wider than the viewport",
        browser.url()
    );
}

#[test]
fn console_in_chromium() {
    let factory = Factory::embedded(2);
    let addr = start_console(&factory);
    let base = format!("https://{addr}");
    let order = factory.order.order_id.clone();
    let other_dir = tempfile::tempdir().unwrap();
    let pending = pending_station(&factory, other_dir.path());
    let shots = screenshots();
    let driver = trusting_browser(&factory);
    let browser = driver.browser(DESKTOP.0, DESKTOP.1);

    // Not logged in: every page leads to the login page; a wrong token is the API's refusal.
    browser.goto(&format!("{base}/stations"));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    browser.screenshot(&shots.join("login-desktop.png"));
    log_in(&browser, &base, "not-the-token");
    let refusal = browser.text(&browser.find(".refused"));
    assert!(
        refusal.contains("the operator token is not valid"),
        "{refusal}"
    );
    browser.screenshot(&shots.join("login-refused-desktop.png"));

    log_in(&browser, &base, &factory.coordinator.operator_token);
    assert!(browser.url().ends_with("/orders"), "{}", browser.url());
    let consumed_cell = format!("document.getElementById('consumed-{order}')");
    assert_eq!(
        browser.text(&browser.find(&format!("#consumed-{order}"))),
        "0"
    );

    // The bar moves while a station provisions, without a reload.
    browser.execute("window.notReloaded = true; return null;", json!([]));
    let mut station = factory.spawn_station(2, &[]);
    let moved = browser.wait_until(
        &format!(
            "return window.notReloaded === true && {consumed_cell}.textContent !== '0' &&
                 parseFloat(document.querySelector('#bar-{order} rect.consumed').getAttribute('width')) > 0;"
        ),
        Duration::from_secs(240),
    );
    browser.screenshot(&shots.join("orders-in-progress-desktop.png"));
    assert!(moved, "the consumed count never moved without a reload");
    let done = browser.wait_until(
        &format!(
            "return window.notReloaded === true && {consumed_cell}.textContent === '2' &&
                 document.getElementById('remaining-{order}').textContent === '0' &&
                 document.querySelector('#bar-{order} rect.consumed').getAttribute('width') === '100.00';"
        ),
        Duration::from_secs(240),
    );
    browser.screenshot(&shots.join("orders-desktop.png"));
    assert!(done, "the order never showed 2 of 2 consumed");
    let status = station.wait(Duration::from_secs(120));
    assert!(status.success(), "station exit {status}");

    // Approve the pending station, through its confirmation page.
    browser.goto(&format!("{base}/stations"));
    browser.screenshot(&shots.join("stations-desktop.png"));
    browser.click(&browser.find(&format!("a[href='/stations/{pending}/approve']")));
    assert!(browser
        .url()
        .ends_with(&format!("/stations/{pending}/approve")));
    browser.screenshot(&shots.join("station-approve-confirm-desktop.png"));
    assert!(browser.text(&browser.find("main")).contains("line 2"));
    browser.click(&browser.find("form.confirm button[type=submit]"));
    settled(&browser, "location.pathname === '/stations'");
    let approved = browser.execute(
        &format!(
            "return Array.from(document.querySelectorAll('tbody tr'))
                 .find(r => r.textContent.includes('{pending}'))
                 .querySelector('td.state-approved') !== null;"
        ),
        json!([]),
    );
    assert_eq!(approved, json!(true), "the station shows approved");

    // Create an order: form, confirmation, the new order's page.
    browser.goto(&format!("{base}/orders/new"));
    browser.type_into(&browser.find("#factory"), "f1");
    browser.type_into(&browser.find("#stations"), &pending);
    browser.type_into(&browser.find("#count"), "3");
    browser.type_into(&browser.find("#order_id"), "console-order-1");
    browser.screenshot(&shots.join("order-new-desktop.png"));
    browser.click(&browser.find("form.order button[type=submit]"));
    settled(&browser, "location.pathname === '/orders/new/confirm'");
    assert!(browser
        .text(&browser.find("main"))
        .contains("Create an order for 3 devices"));
    browser.screenshot(&shots.join("order-confirm-desktop.png"));
    browser.click(&browser.find("form.confirm button[type=submit]"));
    settled(&browser, "location.pathname === '/orders/console-order-1'");
    assert_eq!(browser.text(&browser.find("#ordered-console-order-1")), "3");
    assert_eq!(
        browser.text(&browser.find("#remaining-console-order-1")),
        "3"
    );
    browser.screenshot(&shots.join("order-desktop.png"));

    // The API's refusal comes through: the same order id again.
    browser.goto(&format!("{base}/orders/new"));
    browser.type_into(&browser.find("#factory"), "f1");
    browser.type_into(&browser.find("#count"), "1");
    browser.type_into(&browser.find("#order_id"), "console-order-1");
    browser.click(&browser.find("form.order button[type=submit]"));
    settled(&browser, "location.pathname === '/orders/new/confirm'");
    browser.click(&browser.find("form.confirm button[type=submit]"));
    settled(&browser, "document.querySelector('.refused') !== null");
    let refusal = browser.text(&browser.find(".refused"));
    assert!(refusal.contains("The coordinator refused"), "{refusal}");
    browser.screenshot(&shots.join("order-refused-desktop.png"));

    // Device search and a device's page.
    let device = factory.registered().into_iter().next().unwrap();
    let serial = hex::encode(&device.serial);
    browser.goto(&format!("{base}/devices"));
    browser.type_into(&browser.find("#serial"), &serial);
    browser.click(&browser.find("form.search button"));
    assert!(browser.wait_until(
        "return location.search.includes('serial=') && document.readyState === 'complete';",
        Duration::from_secs(10)
    ));
    browser.click(&browser.find(&format!(
        "a[href='/devices/{}/{serial}']",
        device.product_id
    )));
    assert!(browser
        .text(&browser.find("main"))
        .contains(&device.station_id));
    browser.screenshot(&shots.join("device-desktop.png"));

    // Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    browser.goto(&format!("{base}/orders"));
    browser.send_keys(TAB);
    let focused = browser.execute(
        "const e = document.activeElement;
         return [e.textContent, getComputedStyle(e).outlineStyle];",
        json!([]),
    );
    assert_eq!(focused[0], "Skip to content", "{focused}");
    assert_ne!(focused[1], "none", "focus is visible");
    browser.send_keys(ENTER);
    let on_main = browser.execute("return document.activeElement.id;", json!([]));
    assert_eq!(on_main, "main");

    // Every page at both sizes: screenshots, nothing from elsewhere, nothing wider than the screen.
    let pages = [
        ("orders", "/orders".to_owned()),
        ("order", format!("/orders/{order}")),
        ("stations", "/stations".to_owned()),
        ("devices", "/devices".to_owned()),
        ("device", format!("/devices/{}/{serial}", device.product_id)),
        ("updates", "/updates".to_owned()),
        ("audit", "/audit".to_owned()),
        ("ingest", "/ingest".to_owned()),
        ("order-new", "/orders/new".to_owned()),
    ];
    for (size, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
        browser.resize(w, h);
        for (name, path) in &pages {
            browser.goto(&format!("{base}{path}"));
            assert!(!browser.title().is_empty());
            assert_only_local_urls(&browser, &base);
            if size == "phone" {
                assert_fits(&browser);
            }
            browser.screenshot(&shots.join(format!("{name}-{size}.png")));
        }
    }

    // The audit trail lists what this session did, and the chains verify.
    browser.resize(DESKTOP.0, DESKTOP.1);
    browser.goto(&format!("{base}/audit"));
    let trail = browser.text(&browser.find("main"));
    assert!(trail.contains("The audit log verifies"), "{trail}");
    assert!(trail.contains("station approved"), "{trail}");
    assert!(trail.contains("console-order-1"), "{trail}");

    // Log out: the session is gone.
    browser.goto(&format!("{base}/orders"));
    browser.click(&browser.find("form.logout button"));
    settled(&browser, "location.pathname === '/login'");
    browser.goto(&format!("{base}/orders"));
    assert!(browser.url().ends_with("/login"), "logged out");

    // A viewer sees the pages but cannot act: the API's PERMISSION_DENIED, nothing changed.
    let viewer = factory
        .rt
        .block_on(
            factory
                .coordinator
                .operator_with_role("console-viewer", Role::Viewer),
        )
        .unwrap();
    log_in(&browser, &base, &viewer);
    assert!(browser.url().ends_with("/orders"), "the viewer logs in");
    browser.goto(&format!("{base}/stations"));
    let offered = browser.execute(
        &format!(
            "return document.querySelector(\"a[href='/stations/{pending}/revoke']\") !== null;"
        ),
        json!([]),
    );
    assert_eq!(offered, json!(false), "a viewer is not offered revoke");
    // The API is what refuses: the confirmation page reached by its address and submitted.
    browser.goto(&format!("{base}/stations/{pending}/revoke"));
    browser.click(&browser.find("form.confirm button[type=submit]"));
    settled(&browser, "document.querySelector('.refused') !== null");
    let refusal = browser.text(&browser.find(".refused"));
    assert!(refusal.contains("PermissionDenied"), "{refusal}");
    assert!(
        refusal.contains("admin"),
        "names the role needed: {refusal}"
    );
    browser.screenshot(&shots.join("viewer-refused-desktop.png"));
    browser.goto(&format!("{base}/stations"));
    let still = browser.execute(
        &format!(
            "return Array.from(document.querySelectorAll('tbody tr'))
                 .find(r => r.textContent.includes('{pending}'))
                 .querySelector('td.state-approved') !== null;"
        ),
        json!([]),
    );
    assert_eq!(still, json!(true), "the viewer's revoke changed nothing");
}

/// The console's TLS, cookie flags, a forged form and a forged session, spoken to the console
/// directly: its certificate chains to the coordinator's CA (a client trusting only that CA
/// completes the handshake; one trusting another CA does not), plain HTTP gets a 400 saying
/// to use HTTPS, and the session cookie is `Secure`.
#[test]
fn console_sessions_and_forms() {
    let factory = Factory::embedded(1);
    let addr = start_console(&factory);
    let ca = factory.coordinator.ca_pem.clone();
    let http = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        https(&addr, &ca, method, path, headers, body)
            .expect("the console's certificate chains to the coordinator CA")
    };

    let other_ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .cert
        .pem();
    let refused = https(&addr, &other_ca, "GET", "/login", &[], b"");
    assert!(
        matches!(refused, Err(rustls::Error::InvalidCertificate(_))),
        "a client trusting another CA refuses the console: {refused:?}"
    );
    let (status, _, body) = plain_http(&addr, "GET", "/login", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("HTTPS only") && body.contains("ca.pem"),
        "{body}"
    );

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, headers, _) = http(
        "POST",
        "/login",
        &form,
        format!("token={}", factory.coordinator.operator_token).as_bytes(),
    );
    assert_eq!(status, 303);
    let cookie = headers
        .iter()
        .find(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    // A form without the session's CSRF token changes nothing.
    let with_cookie = [form[0], ("Cookie", session.as_str())];
    let station = &factory.station_id;
    let (status, _, body) = http(
        "POST",
        &format!("/stations/{station}/revoke"),
        &with_cookie,
        b"csrf=forged",
    );
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("CSRF"));
    let (_, _, page) = http("GET", "/stations", &[("Cookie", &session)], b"");
    assert!(
        String::from_utf8_lossy(&page).contains("state-approved"),
        "still approved"
    );

    // A made-up session is no session; pages carry the strict content policy.
    let (status, headers, _) = http(
        "GET",
        "/orders",
        &[("Cookie", "flashgate_session=00ff")],
        b"",
    );
    assert_eq!(status, 303);
    let csp = headers
        .iter()
        .find(|(n, _)| n == "content-security-policy")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for live in ["/live/orders.json", "/live/rollouts.json"] {
        let (status, _, _) = http("GET", live, &[("Cookie", "flashgate_session=00ff")], b"");
        assert_eq!(status, 303, "{live}");
    }
}

/// Simulated devices of a staged rollout: registered with their own device keys, fetching
/// their packages and answering with status receipts made with those keys (as a board's
/// bootloader would), over the coordinator's gRPC port.
struct RolloutFleet {
    rollout_id: String,
    devices: Vec<([u8; 16], [u8; 32])>,
}

impl RolloutFleet {
    /// `count` devices of the factory's product and a rollout of an OS v2 release to them in
    /// waves of 2 and the rest.
    fn start(factory: &Factory, count: usize) -> Self {
        let tc = &factory.coordinator;
        factory.rt.block_on(async {
            let digest = tc
                .upload_os_release(PRODUCT_ID, &factory.vendor.key, 2)
                .await
                .unwrap();
            let devices = tc.register_random_devices(PRODUCT_ID, count).await.unwrap();
            let status = UpdateServiceClient::new(tc.channel().await.unwrap())
                .start_rollout(
                    tc.operator_request(v1::StartRolloutRequest {
                        release_digest: digest,
                        serials: devices.iter().map(|(s, _)| s.to_vec()).collect(),
                        waves: [2, count as u32]
                            .into_iter()
                            .map(|n| v1::WaveSize {
                                size: Some(v1::wave_size::Size::Count(n)),
                            })
                            .collect(),
                        failure_threshold: Some(v1::FailureThreshold {
                            limit: Some(v1::failure_threshold::Limit::Count(3)),
                        }),
                        ..Default::default()
                    }),
                )
                .await
                .unwrap()
                .into_inner();
            Self {
                rollout_id: status.rollout_id,
                devices,
            }
        })
    }

    /// The devices of the open waves that have no outcome yet.
    fn waiting(&self, factory: &Factory) -> Vec<[u8; 16]> {
        let tc = &factory.coordinator;
        let mut waiting = Vec::new();
        for (serial, _) in &self.devices {
            let (package, status) = factory.rt.block_on(async {
                let mut updates = UpdateServiceClient::new(tc.channel().await.unwrap());
                let package = updates
                    .get_update_package(tc.operator_request(v1::GetUpdatePackageRequest {
                        product_id: PRODUCT_ID,
                        serial: serial.to_vec(),
                    }))
                    .await;
                let status = updates
                    .get_device_status(tc.operator_request(v1::GetDeviceStatusRequest {
                        product_id: PRODUCT_ID,
                        serial: serial.to_vec(),
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                (package, status)
            });
            if package.is_ok() && status.state != "updated" {
                waiting.push(*serial);
            }
        }
        waiting
    }

    /// Device `serial` fetches its package, installs it and confirms v2 with a receipt made
    /// with its key.
    fn confirm(&self, factory: &Factory, serial: &[u8; 16]) {
        let key = &self.devices.iter().find(|(s, _)| s == serial).unwrap().1;
        let status = factory
            .rt
            .block_on(factory.coordinator.confirm_update(PRODUCT_ID, *serial, key))
            .unwrap();
        assert_eq!(status.state, "updated", "{status:?}");
    }

    /// The rollout as the API reports it.
    fn status(&self, factory: &Factory) -> v1::RolloutStatus {
        let tc = &factory.coordinator;
        factory.rt.block_on(async {
            UpdateServiceClient::new(tc.channel().await.unwrap())
                .get_rollout(tc.operator_request(v1::RolloutRequest {
                    rollout_id: self.rollout_id.clone(),
                }))
                .await
                .unwrap()
                .into_inner()
        })
    }
}

/// Presses Tab until the focused element's text is `label` (at most 40 times); whether it got
/// there.
fn tab_to(browser: &Browser, label: &str) -> bool {
    for _ in 0..40 {
        browser.send_keys(TAB);
        let text = browser.execute(
            "return document.activeElement.textContent.trim();",
            json!([]),
        );
        if text == label {
            return true;
        }
    }
    false
}

/// Pause and resume a rollout of simulated devices through the console, as a release
/// operator (by keyboard), live counts, and a viewer refused by the API.
#[test]
fn console_pauses_a_rollout() {
    let factory = Factory::embedded(1);
    let addr = start_console(&factory);
    let base = format!("https://{addr}");
    let shots = screenshots();
    let fleet = RolloutFleet::start(&factory, 5);
    let id = fleet.rollout_id.clone();
    // Wave 1 (2 devices) confirms, so wave 2 opens; one device of wave 2 confirms too.
    let first = fleet.waiting(&factory);
    assert_eq!(first.len(), 2, "only the first wave gets packages");
    for serial in &first {
        fleet.confirm(&factory, serial);
    }
    let second = fleet.waiting(&factory);
    assert_eq!(second.len(), 3, "wave 2 opened after wave 1 confirmed");
    fleet.confirm(&factory, &second[0]);

    let release = factory
        .rt
        .block_on(
            factory
                .coordinator
                .operator_with_role("release-op", Role::Release),
        )
        .unwrap();
    // A Chromium that does not trust the coordinator's CA gets its certificate error page,
    // not the console: the trusting one below trusts the CA, nothing is ignored.
    {
        let untrusting = ChromeDriver::start();
        let browser = untrusting.browser(DESKTOP.0, DESKTOP.1);
        browser.goto(&format!("{base}/login"));
        assert!(
            browser.try_find("#token").is_none(),
            "an untrusted certificate is refused"
        );
        let page = browser.text(&browser.find("body"));
        assert!(page.contains("ERR_CERT_AUTHORITY_INVALID"), "{page}");
    }
    let driver = trusting_browser(&factory);
    let browser = driver.browser(DESKTOP.0, DESKTOP.1);
    log_in(&browser, &base, &release);
    let secure = browser.execute(
        "return [location.protocol, window.isSecureContext];",
        json!([]),
    );
    assert_eq!(secure, json!(["https:", true]));

    // The updates page lists the rollout with its two waves.
    browser.goto(&format!("{base}/updates"));
    let row = format!("tr[data-rollout='{id}']");
    assert_eq!(
        browser.text(&browser.find(&format!("#state-{id}"))),
        "running"
    );
    assert_eq!(
        browser.text(&browser.find(&format!("#count-{id}-1"))),
        "2/2"
    );
    assert_eq!(
        browser.text(&browser.find(&format!("#count-{id}-2"))),
        "1/3"
    );
    let bar = browser.execute(
        &format!(
            "return document.querySelector('#wave-{id}-1 rect.confirmed').getAttribute('width');"
        ),
        json!([]),
    );
    assert_eq!(bar, json!("100.00"), "wave 1 is fully confirmed");
    assert!(browser
        .try_find(&format!("{row} a[href='/updates/rollouts/{id}/pause']"))
        .is_some());
    browser.screenshot(&shots.join("updates-rollouts-desktop.png"));

    // The rollout's page moves without a reload when a device confirms.
    browser.click(&browser.find(&format!("{row} a[href='/updates/rollouts/{id}']")));
    settled(
        &browser,
        &format!("location.pathname === '/updates/rollouts/{id}'"),
    );
    browser.execute("window.notReloaded = true; return null;", json!([]));
    fleet.confirm(&factory, &second[1]);
    assert!(
        browser.wait_until(
            &format!(
                "return window.notReloaded === true &&
                     document.getElementById('confirmed-{id}-2').textContent === '2' &&
                     document.getElementById('pending-{id}-2').textContent === '1';"
            ),
            Duration::from_secs(20),
        ),
        "the wave's counts never moved without a reload"
    );
    browser.screenshot(&shots.join("rollout-desktop.png"));

    // Pause by keyboard: Tab to the Pause link, Enter, then Enter on the confirmation's
    // focused button.
    assert!(tab_to(&browser, "Pause"), "Pause is reachable by Tab");
    browser.send_keys(ENTER);
    settled(
        &browser,
        &format!("location.pathname === '/updates/rollouts/{id}/pause'"),
    );
    let confirm = browser.text(&browser.find("main"));
    assert!(
        confirm.contains(&format!("Pause rollout {id}")),
        "{confirm}"
    );
    browser.screenshot(&shots.join("rollout-pause-confirm-desktop.png"));
    let focused = browser.execute("return document.activeElement.textContent;", json!([]));
    assert_eq!(
        focused,
        json!("Yes, pause"),
        "the confirmation's button has focus"
    );
    browser.send_keys(ENTER);
    settled(
        &browser,
        &format!("location.pathname === '/updates/rollouts/{id}' && document.getElementById('state-{id}').textContent === 'paused'"),
    );
    assert_eq!(fleet.status(&factory).state, "paused");
    let resume_link = format!("a[href='/updates/rollouts/{id}/resume']");
    let offered = browser.execute(
        &format!(
            "return !document.querySelector(\"{resume_link}\").hidden &&
                 document.querySelector(\"a[href='/updates/rollouts/{id}/pause']\").hidden;"
        ),
        json!([]),
    );
    assert_eq!(
        offered,
        json!(true),
        "Resume, not Pause, is offered once paused"
    );
    let resume = browser.find(&resume_link);
    browser.screenshot(&shots.join("rollout-paused-desktop.png"));
    // Paused: the last device of wave 2 gets no package.
    assert!(
        fleet.waiting(&factory).is_empty(),
        "a paused rollout issues nothing"
    );

    // Resume (by mouse this time).
    browser.click(&resume);
    settled(
        &browser,
        &format!("location.pathname === '/updates/rollouts/{id}/resume'"),
    );
    browser.click(&browser.find("form.confirm button[type=submit]"));
    settled(
        &browser,
        &format!("document.getElementById('state-{id}') !== null && document.getElementById('state-{id}').textContent === 'running'"),
    );
    assert_eq!(fleet.status(&factory).state, "running");

    // Both pages at both sizes: nothing from elsewhere, nothing wider than the screen.
    for (size, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
        browser.resize(w, h);
        for (name, path) in [
            ("updates-rollouts", "/updates".to_owned()),
            ("rollout", format!("/updates/rollouts/{id}")),
        ] {
            browser.goto(&format!("{base}{path}"));
            assert_only_local_urls(&browser, &base);
            assert_fits(&browser);
            browser.screenshot(&shots.join(format!("{name}-{size}.png")));
        }
    }
    browser.resize(DESKTOP.0, DESKTOP.1);

    // The audit trail names the operator who paused and resumed.
    browser.goto(&format!("{base}/audit"));
    let paused_by = browser.execute(
        &format!(
            "return Array.from(document.querySelectorAll('tbody tr'))
                 .filter(r => r.textContent.includes('{id}'))
                 .map(r => Array.from(r.cells).slice(1, 3).map(c => c.textContent).join(' '));"
        ),
        json!([]),
    );
    let rows: Vec<&str> = paused_by
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        rows.contains(&"operator:release-op rollout paused"),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"operator:release-op rollout resumed"),
        "{rows:?}"
    );

    // A viewer sees no enabled action; a forged pause with the viewer's own session and CSRF
    // token is the API's PERMISSION_DENIED, and nothing changes.
    browser.goto(&format!("{base}/orders"));
    browser.click(&browser.find("form.logout button"));
    settled(&browser, "location.pathname === '/login'");
    let viewer = factory
        .rt
        .block_on(
            factory
                .coordinator
                .operator_with_role("rollout-viewer", Role::Viewer),
        )
        .unwrap();
    log_in(&browser, &base, &viewer);
    for path in ["/updates".to_owned(), format!("/updates/rollouts/{id}")] {
        browser.goto(&format!("{base}{path}"));
        let enabled = browser.execute(
            "return Array.from(document.querySelectorAll('main a.button, main button'))
                 .filter(e => !e.disabled && !e.hidden).map(e => e.textContent);",
            json!([]),
        );
        assert_eq!(
            enabled,
            json!([]),
            "{path}: the viewer has no enabled action"
        );
        let disabled = browser.execute(
            "return Array.from(document.querySelectorAll('main button[disabled]')).map(e => e.textContent);",
            json!([]),
        );
        assert!(
            disabled.as_array().unwrap().contains(&json!("Pause")),
            "{path}: {disabled}"
        );
    }
    browser.screenshot(&shots.join("rollout-viewer-desktop.png"));
    browser.execute(
        &format!(
            "const f = document.createElement('form');
             f.method = 'post';
             f.action = '/updates/rollouts/{id}/pause';
             const c = document.querySelector('form.logout input[name=csrf]').cloneNode();
             f.appendChild(c);
             document.body.appendChild(f);
             f.submit();
             return null;"
        ),
        json!([]),
    );
    settled(&browser, "document.querySelector('.refused') !== null");
    let refusal = browser.text(&browser.find(".refused"));
    assert!(refusal.contains("PermissionDenied"), "{refusal}");
    assert!(
        refusal.contains("release"),
        "names the role needed: {refusal}"
    );
    browser.screenshot(&shots.join("rollout-viewer-refused-desktop.png"));
    assert_eq!(
        fleet.status(&factory).state,
        "running",
        "the viewer's pause changed nothing"
    );
}
