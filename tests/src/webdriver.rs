//! A small WebDriver client for the console's browser tests: Debian's `chromedriver` as a
//! process on a loopback port, headless Chromium behind it (trusting the test coordinator's CA:
//! [`ChromeDriver::start_trusting`]), spoken to over plain HTTP/1.1 with JSON (the W3C
//! WebDriver protocol) — no client crate needed for the dozen commands used. [`https`] speaks
//! to the console itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::station_harness::free_port;

/// Debian's `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's `chromium`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `libnss3-tools`: puts a test CA into the NSS database Chromium reads.
pub const CERTUTIL: &str = "/usr/bin/certutil";

/// The W3C key code of Tab, for [`Browser::send_keys`].
pub const TAB: &str = "\u{e004}";
/// The W3C key code of Enter.
pub const ENTER: &str = "\u{e007}";

/// A reply: status, headers (names in lower case) and body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream
}

/// One HTTP/1.1 exchange on a fresh connection: status and body. Handles `Content-Length`
/// and chunked replies. Also used by tests to speak to the console directly.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    exchange(connect(addr), addr, method, path, headers, body)
}

/// [`http`] over TLS 1.3 (rustls), trusting only the CA `ca_pem`: a reply at all shows the
/// server's certificate chains to that CA and names `127.0.0.1`.
pub fn https(
    addr: &str,
    ca_pem: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, rustls::Error> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut tcp = connect(addr);
    // Finish the handshake here, so a refused certificate is an error, not a panic on write.
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).map_err(|e| {
            e.into_inner()
                .and_then(|inner| inner.downcast::<rustls::Error>().ok())
                .map_or(rustls::Error::General("handshake I/O failed".into()), |e| {
                    *e
                })
        })?;
    }
    let stream = rustls::StreamOwned::new(connection, tcp);
    Ok(exchange(stream, addr, method, path, headers, body))
}

fn exchange(
    mut stream: impl Read + Write,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut reply_headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            reply_headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        reply_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut reply = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            reply.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = header("content-length") {
        reply.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut reply).unwrap();
    } else {
        reader.read_to_end(&mut reply).unwrap();
    }
    (status, reply_headers, reply)
}

/// `chromedriver` on a free loopback port; killed on drop.
pub struct ChromeDriver {
    child: Child,
    addr: String,
    _home: Option<tempfile::TempDir>,
}

impl ChromeDriver {
    /// Starts it and waits until it answers `/status` as ready.
    pub fn start() -> Self {
        Self::spawn(Command::new(CHROMEDRIVER), None)
    }

    /// Starts it with a Chromium that trusts the CA `ca_pem` as a root, as an operator's
    /// browser trusts the coordinator's: the CA goes into the NSS database of a fresh home
    /// directory (`certutil`, Debian's `libnss3-tools`), where Chromium on Linux looks for
    /// locally trusted roots. Nothing else is relaxed: no certificate error is ignored.
    pub fn start_trusting(ca_pem: &str) -> Self {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&db).unwrap();
        let ca = home.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let sql = format!("sql:{}", db.display());
        let certutil = |args: &[&str]| {
            let out = Command::new(CERTUTIL)
                .args(args)
                .output()
                .unwrap_or_else(|e| {
                    panic!("{CERTUTIL} (scripts/setup.sh installs libnss3-tools): {e}")
                });
            assert!(
                out.status.success(),
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        certutil(&["-N", "-d", &sql, "--empty-password"]);
        certutil(&[
            "-A",
            "-d",
            &sql,
            "-n",
            "flashgate test CA",
            "-t",
            "C,,",
            "-i",
            ca.to_str().unwrap(),
        ]);
        let mut command = Command::new(CHROMEDRIVER);
        command.env("HOME", home.path());
        Self::spawn(command, Some(home))
    }

    fn spawn(mut command: Command, home: Option<tempfile::TempDir>) -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "browser tests need Debian's chromium and chromium-driver (scripts/setup.sh installs them)"
        );
        let port = free_port();
        let child = command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            _home: home,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(&driver.addr).is_ok() {
                let (_, _, body) = http(&driver.addr, "GET", "/status", &[], b"");
                let status: Value = serde_json::from_slice(&body).unwrap_or_default();
                if status["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A headless Chromium window of `width`×`height` CSS pixels.
    pub fn browser(&self, width: u32, height: u32) -> Browser {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let reply = command(&self.addr, "POST", "/session", Some(&capabilities));
        let session = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        Browser {
            addr: self.addr.clone(),
            session,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; the reply's `value`. Panics with the driver's error.
fn command(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, _, reply) = http(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let reply: Value = serde_json::from_slice(&reply)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e})"));
    assert!(status == 200, "{method} {path}: {status} {reply}");
    reply["value"].clone()
}

/// A browser session; closed on drop.
pub struct Browser {
    addr: String,
    session: String,
}

/// An element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        command(
            &self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    /// Navigates to `url` and waits for the load.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None).as_str().unwrap().to_owned()
    }

    /// The first element matching `css`, or `None`.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let (status, _, body) = http(
            &self.addr,
            "POST",
            &format!("/session/{}/element", self.session),
            &[("Content-Type", "application/json")],
            json!({"using": "css selector", "value": css})
                .to_string()
                .as_bytes(),
        );
        let reply: Value = serde_json::from_slice(&body).unwrap();
        (status == 200).then(|| {
            let id = reply["value"][ELEMENT_KEY].as_str();
            Element(
                id.unwrap_or_else(|| panic!("find {css}: {reply}"))
                    .to_owned(),
            )
        })
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element {css:?} on {}", self.url()))
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        );
    }

    /// Types `text` into `element` (W3C key codes such as [`TAB`] allowed).
    pub fn type_into(&self, element: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        );
    }

    /// Presses keys on whatever has the focus.
    pub fn send_keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for key in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": key.to_string()}));
            actions.push(json!({"type": "keyUp", "value": key.to_string()}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// `element`'s rendered text.
    pub fn text(&self, element: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", element.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Resizes the window to `width`×`height`.
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Waits (up to `timeout`) until `script` returns `true`; returns whether it did.
    pub fn wait_until(&self, script: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.execute(script, json!([])) == json!(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            b"",
        );
    }
}
