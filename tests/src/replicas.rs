//! Coordinator replicas as real `flashgate-coordinator serve` processes on one store, each on its
//! own loopback port: SIGKILLed, restarted, and checked to serve again (gRPC health answers
//! `SERVING` and a real RPC is answered).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use flashgate_proto::v1::{self, station_service_client::StationServiceClient};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::station_harness::free_port;

/// The `flashgate-coordinator` binary next to the test binaries.
pub fn coordinator_binary() -> PathBuf {
    crate::workspace_binary("flashgate-coordinator", "flashgate-coordinator")
}

/// libfaketime's preload library (Debian's `libfaketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One replica.
pub struct Replica {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

/// Replicas sharing one store, keys and operator token.
pub struct Replicas {
    /// The replicas.
    pub replicas: Vec<Replica>,
    store: String,
    extra: Vec<String>,
    /// The lease-signing key every replica uses.
    pub signing: SigningKey,
    /// The operator token.
    pub token: String,
    skew_secs: Vec<i64>,
    dir: tempfile::TempDir,
}

/// The CA of the replicas this test process started (nextest runs each test in its own
/// process): every client here trusts it.
static CA_PEM: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// How this process's clients reach the replicas: TLS trusting their CA.
pub fn security() -> flashgate_proto::transport::Security {
    flashgate_proto::transport::Security::Tls(flashgate_proto::transport::ClientTls::new(
        CA_PEM.lock().expect("CA lock").clone().into_bytes(),
    ))
}

/// A channel to `endpoint` (TLS, see [`security`]; `station`: with its identity certificate).
pub fn endpoint_for(
    endpoint: &str,
    station: Option<&flashgate_proto::station_auth::StationSigner>,
) -> Option<tonic::transport::Endpoint> {
    let security = match station {
        Some(signer) => signer.security(&security()).ok()?,
        None => security(),
    };
    flashgate_proto::transport::endpoint(endpoint, &security).ok()
}

impl Replicas {
    /// `n` replicas on `store` (`--store` syntax) with `extra` flags, started (not yet waited
    /// for: see [`Replicas::wait_serving`]).
    pub fn start(n: usize, store: &str, extra: &[&str]) -> Self {
        Self::start_skewed(&vec![0; n], store, extra)
    }

    /// Like [`Replicas::start`], one replica per entry of `skew_secs`, each with its clock
    /// that many seconds off (libfaketime, `LD_PRELOAD`; 0 = the real clock).
    pub fn start_skewed(skew_secs: &[i64], store: &str, extra: &[&str]) -> Self {
        let n = skew_secs.len();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("kek"), hex::encode([0x11u8; 32])).unwrap();
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        std::fs::write(dir.path().join("signing"), hex::encode(signing.to_bytes())).unwrap();
        let token = "chaos-operator-token".to_owned();
        std::fs::write(dir.path().join("token"), &token).unwrap();
        let tls = flashgate_coordinator::tls::init(
            &dir.path().join("tls"),
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
            1,
        )
        .expect("a loopback certificate");
        *CA_PEM.lock().expect("CA lock") = tls.ca_pem;
        let mut this = Self {
            replicas: (0..n)
                .map(|_| Replica {
                    port: free_port(),
                    child: None,
                })
                .collect(),
            store: store.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            signing,
            token,
            skew_secs: skew_secs.to_vec(),
            dir,
        };
        for i in 0..n {
            this.restart(i);
        }
        this
    }

    fn spawn(&self, i: usize) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("replica{i}.log")))
            .expect("replica log");
        let mut command = Command::new(coordinator_binary());
        let skew = self.skew_secs[i];
        if skew != 0 {
            assert!(
                Path::new(LIBFAKETIME).exists(),
                "{LIBFAKETIME} is missing: apt-get install libfaketime (scripts/setup.sh does)"
            );
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", format!("{skew:+}s"))
                // Wall clock only: tokio's timers keep the real monotonic clock.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.replicas[i].port)])
            .args(["--store", &self.store])
            .arg("--kek-file")
            .arg(self.dir.path().join("kek"))
            .arg("--signing-key-file")
            .arg(self.dir.path().join("signing"))
            .args(["--node-id", &format!("replica{i}")])
            .arg("--operator-token-file")
            .arg(self.dir.path().join("token"))
            .arg("--tls-cert")
            .arg(self.dir.path().join("tls/server.pem"))
            .arg("--tls-key")
            .arg(self.dir.path().join("tls/server.key"))
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the coordinator binary starts")
    }

    /// `https://127.0.0.1:PORT` of replica `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.replicas[i].port)
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL (when running), then start again on the same port.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let child = self.spawn(i);
        self.replicas[i].child = Some(child);
    }

    /// Starts replica `i` again if its process exited by itself (a replica may give up when
    /// its store is unreachable at start): true when it did.
    pub fn revive_if_exited(&mut self, i: usize) -> bool {
        let exited = match self.replicas[i].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        };
        if exited {
            self.restart(i);
        }
        exited
    }

    /// The process id of replica `i` while it runs (to read its memory use).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.replicas[i].child.as_ref().map(Child::id)
    }

    /// Every replica's endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.replicas.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Where the replicas' logs are.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill(i);
        }
    }
}

/// Waits until the coordinator at `endpoint` serves: gRPC health says `SERVING` and
/// `GetCoordinatorInfo` is answered. Returns how long it took; `None` after `limit`.
pub async fn wait_serving(endpoint: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if serving(endpoint).await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn serving(endpoint: &str) -> bool {
    let Ok(channel) = endpoint_for(endpoint, None)
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
    else {
        return false;
    };
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    let healthy = health
        .map(|r| r.into_inner().status == ServingStatus::Serving as i32)
        .unwrap_or(false);
    healthy
        && StationServiceClient::new(channel)
            .get_coordinator_info(v1::GetCoordinatorInfoRequest {})
            .await
            .is_ok()
}
