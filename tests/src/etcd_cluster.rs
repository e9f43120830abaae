//! A three-member (or n-member) etcd cluster on loopback, each member a real `etcd` process
//! with its data in a temporary directory, and a [`FaultProxy`] on each of its links: the
//! client port (coordinators → member) and the peer port (members → member). Members are
//! killed (SIGKILL) and restarted on their data, paused (SIGSTOP / SIGCONT), and cut off.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flashgate_coordinator::store::etcd::EtcdStore;
use flashgate_coordinator::store::KvStore;

use crate::fault_proxy::{Fault, FaultProxy};
use crate::station_harness::{free_port, ETCD};

/// One member: its ports, proxies and process.
pub struct EtcdMember {
    /// `m0`, `m1`, …
    pub name: String,
    client_port: u16,
    peer_port: u16,
    /// In front of the client port (what coordinators dial).
    pub client_proxy: FaultProxy,
    /// In front of the peer port (what the other members dial; advertised as its peer URL).
    pub peer_proxy: FaultProxy,
    child: Option<Child>,
    paused: bool,
    /// etcd's member id (`X-Server-From` on its peer requests), once the cluster is up.
    pub id: String,
}

/// The cluster.
pub struct EtcdCluster {
    /// The members.
    pub members: Vec<EtcdMember>,
    initial_cluster: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers through every client proxy.
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| {
                let client_port = free_port();
                let peer_port = free_port();
                EtcdMember {
                    name: format!("m{i}"),
                    client_port,
                    peer_port,
                    client_proxy: FaultProxy::start(([127, 0, 0, 1], client_port).into(), false),
                    peer_proxy: FaultProxy::start(([127, 0, 0, 1], peer_port).into(), true),
                    child: None,
                    paused: false,
                    id: String::new(),
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_proxy.url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            members,
            initial_cluster,
            dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_ready().await;
        cluster.learn_ids().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", member.name)))
            .expect("member log");
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new(ETCD)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&member.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &member.client_proxy.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &member.peer_proxy.url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "flashgate-chaos"])
            // Fast failure detection, so a run sees several elections in seconds.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts (apt-get install etcd-server)");
        self.members[i].child = Some(child);
        self.members[i].paused = false;
    }

    /// Client URLs (through the proxies), for `--store etcd:…`.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_proxy.url()).collect()
    }

    /// Waits until a write and read succeed through every member's client proxy.
    pub async fn wait_ready(&self) {
        for url in self.client_urls() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&url), "/ready/").await {
                    if store.get("probe").await.is_ok() {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member at {url} never answered; logs in {}",
                    self.dir.path().display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn learn_ids(&mut self) {
        let mut client = etcd_client::Client::connect(self.client_urls(), None)
            .await
            .expect("etcd client");
        let list = client.member_list().await.expect("member list");
        for m in list.members() {
            let member = self
                .members
                .iter_mut()
                .find(|x| x.name == m.name())
                .expect("a member we started");
            member.id = format!("{:x}", m.id());
        }
        assert!(self.members.iter().all(|m| !m.id.is_empty()));
    }

    /// The process id of member `i`, when it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// SIGKILL: a crash, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].paused = false;
    }

    /// Starts a killed member again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// SIGSTOP: the process stays, holds its sockets and answers nothing.
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, "STOP");
            self.members[i].paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, "CONT");
            self.members[i].paused = false;
        }
    }

    /// Cuts member `i` off from the others and from its clients with `fault` (`Blackhole` or
    /// `Drop`): its own links, and every connection it opens to another member.
    pub fn isolate(&self, i: usize, fault: Fault) {
        let me = &self.members[i];
        me.client_proxy.set(fault);
        me.peer_proxy.set(fault);
        for (j, other) in self.members.iter().enumerate() {
            if j != i {
                other.peer_proxy.set_for(&me.id, fault);
            }
        }
    }

    /// Slows every link of member `i` (client, and peers to and from it) by `delay` per chunk.
    pub fn delay(&self, i: usize, delay: Duration) {
        self.isolate(i, Fault::Delay(delay));
    }

    /// Every link passes again, every member runs.
    pub fn heal(&mut self) {
        for i in 0..self.members.len() {
            self.members[i].client_proxy.heal();
            self.members[i].peer_proxy.heal();
            if self.members[i].paused {
                self.resume(i);
            }
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
    }

    /// Heals member `i` only.
    pub fn heal_member(&mut self, i: usize) {
        let id = self.members[i].id.clone();
        self.members[i].client_proxy.heal();
        self.members[i].peer_proxy.heal();
        for (j, other) in self.members.iter().enumerate() {
            if j != i {
                other.peer_proxy.set_for(&id, Fault::Pass);
            }
        }
        if self.members[i].paused {
            self.resume(i);
        }
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// Where the members' logs are.
    pub fn log_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Sends `SIGname` to `pid` (the `kill` utility: no `unsafe` in host crates).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}
