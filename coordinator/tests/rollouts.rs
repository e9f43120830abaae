//! Staged rollouts on a real etcd with two coordinator replicas: 20 simulated devices
//! (registered, each with its own device key) fetch their packages and send status receipts
//! made with that key through the protocol crate, as a board's bootloader would.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use flashgate_coordinator::config::CoordinatorConfig;
use flashgate_coordinator::ids::CampaignId;
use flashgate_coordinator::keys::Kek;
use flashgate_coordinator::repository::Db;
use flashgate_coordinator::testing::{test_config, TestCoordinator};
use flashgate_coordinator::update::rollouts::{self, progress::Step};
use flashgate_proto::v1::{self, update_service_client::UpdateServiceClient};
use flashgate_protocol::hello::DeviceState;
use flashgate_protocol::update::boot_state::{BootState, Outcome, Phase};
use flashgate_protocol::update::receipt::{self, StatusReceipt};
use flashgate_protocol::ErrorCode;
use rand_core::{OsRng, RngCore};
use tonic::transport::Channel;
use tonic::Code;
use zeroize::Zeroizing;

use crate::support::{product_with_os, random_serial, EtcdProcess};

const PRODUCT: u32 = 7;
const DEVICES: usize = 20;

/// How a simulated device ends its update.
#[derive(Clone, Copy)]
enum Ends {
    /// Runs v2, confirmed.
    Confirmed,
    /// The new image never confirmed; the bootloader went back to v1.
    RolledBack,
    /// Refused the package (the field tool reports the code).
    Refused,
}

struct Device {
    serial: [u8; 16],
    key: [u8; 32],
}

/// Two replicas over one etcd namespace, a product with an OS v2 release, 20 devices.
struct Fleet {
    _etcd: EtcdProcess,
    replicas: [TestCoordinator; 2],
    devices: Vec<Device>,
    digest: Vec<u8>,
}

impl Fleet {
    async fn start(namespace: &str, config: CoordinatorConfig) -> Self {
        let etcd = EtcdProcess::start();
        let signing = SigningKey::generate(&mut OsRng);
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let store = Arc::new(etcd.store(namespace).await);
            let kek = Kek::new(Zeroizing::new([0x11; 32]));
            replicas.push(
                TestCoordinator::start(store, config.clone(), signing.clone(), kek)
                    .await
                    .unwrap(),
            );
        }
        let replicas: [TestCoordinator; 2] = replicas.try_into().ok().unwrap();
        let tc = &replicas[0];
        let (_, digest) = product_with_os(tc, PRODUCT, "rollout test", 2, 3000).await;
        let mut devices = Vec::new();
        for _ in 0..DEVICES {
            let mut key = [0u8; 32];
            OsRng.fill_bytes(&mut key);
            let serial = random_serial();
            tc.register_device(PRODUCT, &serial, &key).await.unwrap();
            devices.push(Device { serial, key });
        }
        Self {
            _etcd: etcd,
            replicas,
            devices,
            digest,
        }
    }

    async fn client(&self, replica: usize) -> UpdateServiceClient<Channel> {
        UpdateServiceClient::new(self.replicas[replica].channel().await.unwrap())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.replicas[0].operator_request(message)
    }

    fn device(&self, serial: &[u8]) -> &Device {
        self.devices
            .iter()
            .find(|d| d.serial == serial)
            .expect("one of the fleet")
    }

    async fn package(
        &self,
        replica: usize,
        serial: &[u8],
    ) -> Result<v1::UpdatePackage, tonic::Status> {
        self.client(replica)
            .await
            .get_update_package(self.request(v1::GetUpdatePackageRequest {
                product_id: PRODUCT,
                serial: serial.to_vec(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    /// What the device sends back after its update ended as `ends`.
    fn report(&self, serial: &[u8], challenge: &[u8], ends: Ends) -> v1::ReportUpdateRequest {
        let device = self.device(serial);
        let (state, outcome, floor, last_error) = match ends {
            Ends::Confirmed => (
                DeviceState::OsRunning { version: 2 },
                Outcome::Updated,
                2,
                0,
            ),
            Ends::RolledBack => (
                DeviceState::OsRunning { version: 1 },
                Outcome::RolledBack,
                1,
                ErrorCode::BadSignature as u32,
            ),
            Ends::Refused => {
                return v1::ReportUpdateRequest {
                    product_id: PRODUCT,
                    serial: serial.to_vec(),
                    receipt: Vec::new(),
                    refused_code: ErrorCode::WrongDevice as u32,
                }
            }
        };
        let boot = BootState {
            seq: 9,
            phase: Phase::Idle,
            outcome,
            attempts: 0,
            floor,
            new_version: 2,
            last_error,
            ..BootState::default()
        };
        let r = StatusReceipt::new(device.serial, PRODUCT, 3, state, &boot);
        let challenge: [u8; 32] = challenge.try_into().unwrap();
        v1::ReportUpdateRequest {
            product_id: PRODUCT,
            serial: serial.to_vec(),
            receipt: receipt::encode(&device.key, &challenge, &r).to_vec(),
            refused_code: 0,
        }
    }

    /// The device fetches its package and reports how it ended, over gRPC to `replica`.
    async fn update(&self, replica: usize, serial: &[u8], ends: Ends) -> v1::DeviceUpdateStatus {
        let package = self.package(replica, serial).await.unwrap();
        self.client(replica)
            .await
            .report_update(self.request(self.report(serial, &package.challenge, ends)))
            .await
            .unwrap()
            .into_inner()
    }

    async fn rollout(&self, replica: usize, id: &str) -> v1::RolloutStatus {
        self.client(replica)
            .await
            .get_rollout(self.request(v1::RolloutRequest {
                rollout_id: id.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn start_rollout(
        &self,
        waves: Vec<v1::wave_size::Size>,
        threshold: v1::failure_threshold::Limit,
    ) -> v1::RolloutStatus {
        self.client(0)
            .await
            .start_rollout(
                self.request(v1::StartRolloutRequest {
                    release_digest: self.digest.clone(),
                    all_devices: true,
                    waves: waves
                        .into_iter()
                        .map(|size| v1::WaveSize { size: Some(size) })
                        .collect(),
                    failure_threshold: Some(v1::FailureThreshold {
                        limit: Some(threshold),
                    }),
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
            .into_inner()
    }

    /// The serials of each wave, as the coordinator stored them.
    async fn waves(&self, id: &str) -> Vec<Vec<[u8; 16]>> {
        let db = Db::new(self.replicas[0].coordinator.store().clone());
        let record = db
            .get::<rollouts::record::RolloutRecord>(&CampaignId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap()
            .record;
        record
            .waves
            .iter()
            .map(|w| w.serials.iter().map(|s| s.0).collect())
            .collect()
    }
}

/// (targeted, confirmed, failed, pending) of each wave.
fn counts(status: &v1::RolloutStatus) -> Vec<(u32, u32, u32, u32)> {
    status
        .waves
        .iter()
        .map(|w| (w.targeted, w.confirmed, w.failed, w.pending))
        .collect()
}

fn refused_before_its_wave(result: Result<v1::UpdatePackage, tonic::Status>) -> String {
    let status = result.expect_err("no package outside an open wave");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    status.message().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_in_three_waves_pauses_on_failures_and_resumes_to_completion() {
    use v1::wave_size::Size::Percent;
    let f = Fleet::start("/rollout/", test_config()).await;
    let started = f
        .start_rollout(
            vec![Percent(10), Percent(40), Percent(100)],
            v1::failure_threshold::Limit::Percent(10),
        )
        .await;
    let id = started.rollout_id.clone();
    assert_eq!((started.state.as_str(), started.open_waves), ("running", 1));
    assert_eq!(
        counts(&started),
        [(2, 0, 0, 2), (6, 0, 0, 6), (12, 0, 0, 12)]
    );
    let waves = f.waves(&id).await;

    // A device of an unopened wave gets no package, whichever replica it asks.
    for replica in 0..2 {
        let said = refused_before_its_wave(f.package(replica, &waves[2][0]).await);
        assert!(said.contains("not yet in an open wave"), "{said}");
        assert!(said.contains("wave 3 of 3, 1 open"), "{said}");
    }

    // Wave 1 confirms (reports split over the replicas): wave 2 opens on the last receipt.
    f.update(0, &waves[0][0], Ends::Confirmed).await;
    assert_eq!(f.rollout(1, &id).await.open_waves, 1);
    let status = f.update(1, &waves[0][1], Ends::Confirmed).await;
    assert_eq!(status.state, "updated");
    let s = f.rollout(0, &id).await;
    assert_eq!((s.state.as_str(), s.open_waves), ("running", 2));
    assert!(refused_before_its_wave(f.package(0, &waves[2][5]).await)
        .contains("not yet in an open wave"));

    // Wave 2: four confirm, then one rolls back: 1 failure of 8 opened devices > 10%.
    for serial in &waves[1][..4] {
        f.update(1, serial, Ends::Confirmed).await;
    }
    assert_eq!(f.rollout(0, &id).await.state, "running");
    let rolled = f.update(0, &waves[1][4], Ends::RolledBack).await;
    assert_eq!(rolled.state, "rolled-back");
    let s = f.rollout(1, &id).await;
    assert_eq!(s.state, "paused", "{s:?}");
    assert!(
        s.pause_reason.contains("failure threshold: 1 failed of 8"),
        "{}",
        s.pause_reason
    );
    assert_eq!(counts(&s)[1], (6, 4, 1, 1));
    // Paused: even a device of an open wave gets nothing.
    let said = refused_before_its_wave(f.package(1, &waves[1][5]).await);
    assert!(said.contains("is paused (failure threshold"), "{said}");
    // The sweep runs meanwhile (200 ms): it opens nothing while paused.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(f.rollout(0, &id).await.open_waves, 2);

    // Resume: the failure is accepted; the last device of wave 2 confirms and wave 3 opens.
    let resumed = f
        .client(1)
        .await
        .resume_rollout(f.request(v1::RolloutRequest {
            rollout_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (resumed.state.as_str(), resumed.accepted_failures),
        ("running", 1)
    );
    f.update(0, &waves[1][5], Ends::Confirmed).await;
    let s = f.rollout(0, &id).await;
    assert_eq!((s.state.as_str(), s.open_waves), ("running", 3));

    // Wave 3: one refusal (1 new failure of 20: 5%, under the threshold), the rest confirm.
    f.update(1, &waves[2][0], Ends::Refused).await;
    for (i, serial) in waves[2][1..].iter().enumerate() {
        f.update(i % 2, serial, Ends::Confirmed).await;
    }
    let done = f.rollout(1, &id).await;
    assert_eq!(done.state, "completed", "{done:?}");
    assert_eq!(counts(&done), [(2, 2, 0, 0), (6, 5, 1, 0), (12, 11, 1, 0)]);
    // Completed: pausing it is refused.
    let err = f
        .client(0)
        .await
        .pause_rollout(f.request(v1::RolloutRequest {
            rollout_id: id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Every change is in the audit trail: who started and resumed it, and each step the
    // coordinator took (wave 2 opened, paused on the threshold, wave 3 opened, completed);
    // the refused pause of the completed rollout recorded nothing.
    let trail: Vec<(String, String)> = f.replicas[0]
        .coordinator
        .audit()
        .list("global", 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == id)
        .map(|e| (e.actor, e.action))
        .collect();
    let count = |action: &str| trail.iter().filter(|(_, a)| a == action).count();
    assert_eq!(count("update published"), 1, "{trail:?}");
    assert_eq!(count("rollout paused"), 0, "{trail:?}");
    assert_eq!(count("rollout resumed"), 1, "{trail:?}");
    assert_eq!(count("rollout step"), 4, "{trail:?}");
    assert!(
        trail
            .iter()
            .filter(|(_, a)| a == "rollout step")
            .all(|(who, _)| who == "coordinator"),
        "{trail:?}"
    );
    for tc in f.replicas {
        tc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_one_rollout_take_each_step_once() {
    use v1::wave_size::Size::Count;
    // No sweep during the test: only the racing calls below take steps.
    let config = CoordinatorConfig {
        sweep_interval: Duration::from_secs(3600),
        ..test_config()
    };
    let f = Fleet::start("/rollout-race/", config).await;
    let started = f
        .start_rollout(
            vec![Count(2), Count(5), Count(20)],
            v1::failure_threshold::Limit::Count(0),
        )
        .await;
    let id = CampaignId::parse(&started.rollout_id).unwrap();
    let waves = f.waves(id.as_str()).await;
    assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [2, 3, 15]);

    // Receipts through the library (no report-path step), then 2 × 8 racing advances.
    let race = || async {
        let mut tasks = Vec::new();
        for i in 0..16 {
            let db = Db::new(f.replicas[i % 2].coordinator.store().clone());
            let audit = f.replicas[i % 2]
                .coordinator
                .updates()
                .rollouts
                .audit()
                .clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                rollouts::advance(&db, &audit, &id).await.unwrap()
            }));
        }
        let mut steps = Vec::new();
        for t in tasks {
            steps.extend(t.await.unwrap());
        }
        steps
    };
    for (wave, expected) in [
        (0, Step::OpenWave(2)),
        (1, Step::OpenWave(3)),
        (2, Step::Complete),
    ] {
        for serial in &waves[wave] {
            let delivery = &f.replicas[wave % 2].coordinator.updates().delivery;
            let package = delivery.package(PRODUCT, serial).await.unwrap();
            delivery
                .report(f.report(serial, &package.challenge, Ends::Confirmed))
                .await
                .unwrap();
        }
        assert_eq!(race().await, [expected], "wave {}", wave + 1);
    }
    assert_eq!(f.rollout(0, id.as_str()).await.state, "completed");
    for tc in f.replicas {
        tc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_housekeeping_sweep_steps_what_no_report_stepped() {
    use v1::wave_size::Size::Count;
    let f = Fleet::start("/rollout-sweep/", test_config()).await;
    let id = f
        .start_rollout(
            vec![Count(2), Count(20)],
            v1::failure_threshold::Limit::Count(0),
        )
        .await
        .rollout_id;
    let waves = f.waves(&id).await;
    let (fleet, id) = (&f, id.as_str());
    // Receipts through the library, not the RPC: only the leader's sweep (200 ms) can step.
    let library_update = |serial: [u8; 16], ends| async move {
        let delivery = &fleet.replicas[1].coordinator.updates().delivery;
        let package = delivery.package(PRODUCT, &serial).await.unwrap();
        delivery
            .report(fleet.report(&serial, &package.challenge, ends))
            .await
            .unwrap();
    };
    let eventually = |check: fn(&v1::RolloutStatus) -> bool| async move {
        for _ in 0..50 {
            let s = fleet.rollout(0, id).await;
            if check(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the sweep did not step the rollout: {:?}",
            fleet.rollout(0, id).await
        );
    };
    for serial in &waves[0] {
        library_update(*serial, Ends::Confirmed).await;
    }
    eventually(|s| s.open_waves == 2).await;
    library_update(waves[1][0], Ends::RolledBack).await;
    let s = eventually(|s| s.state == "paused").await;
    assert!(
        s.pause_reason.contains("1 failed of 20"),
        "{}",
        s.pause_reason
    );
    for tc in f.replicas {
        tc.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rollouts_is_newest_first_bounded_and_readable_by_a_viewer() {
    use v1::wave_size::Size::Count;
    let f = Fleet::start("/rollout-list/", test_config()).await;
    let older = f
        .start_rollout(vec![Count(20)], v1::failure_threshold::Limit::Count(5))
        .await;
    // Apart in time: the list orders by start.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer = f
        .start_rollout(
            vec![Count(2), Count(20)],
            v1::failure_threshold::Limit::Count(5),
        )
        .await;
    let viewer = f.replicas[0]
        .operator_with_role("list-viewer", flashgate_coordinator::access::Role::Viewer)
        .await
        .unwrap();
    let (fleet, viewer) = (&f, viewer.as_str());
    let list = |product_id: u32, limit: u32| async move {
        fleet
            .client(1)
            .await
            .list_rollouts(flashgate_coordinator::testing::operator_request(
                viewer,
                v1::ListRolloutsRequest { product_id, limit },
            ))
            .await
            .unwrap()
            .into_inner()
    };
    let all = list(0, 0).await;
    let ids: Vec<&str> = all.rollouts.iter().map(|r| r.rollout_id.as_str()).collect();
    assert_eq!(ids, [newer.rollout_id.as_str(), older.rollout_id.as_str()]);
    assert!(!all.truncated);
    // Each as GetRollout shows it: the newer one's waves, the older one's devices superseded.
    assert_eq!(all.rollouts[0], f.rollout(0, &newer.rollout_id).await);
    assert_eq!(counts(&all.rollouts[0]), [(2, 0, 0, 2), (18, 0, 0, 18)]);
    assert_eq!(all.rollouts[1].waves[0].superseded, 20);
    let first = list(PRODUCT, 1).await;
    assert_eq!(first.rollouts.len(), 1);
    assert_eq!(first.rollouts[0].rollout_id, newer.rollout_id);
    assert!(first.truncated, "a second rollout matched");
    assert!(list(PRODUCT + 1, 0).await.rollouts.is_empty());
    for tc in f.replicas {
        tc.stop().await;
    }
}

/// A board's flash copied onto another chip carries the same device key: both answer receipt
/// challenges that verify. The copy never got the update, so its receipt shows the old rollback
/// floor, which on one device never goes down: the second receipt is refused and written as
/// clone evidence, once, on either replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_whose_floor_went_back_is_refused_as_clone_evidence_once() {
    let f = Fleet::start("/rollout-clone-receipt/", test_config()).await;
    let serial = f.devices[0].serial;
    f.client(0)
        .await
        .publish_update(f.request(v1::PublishUpdateRequest {
            release_digest: f.digest.clone(),
            serials: vec![serial.to_vec()],
            ..Default::default()
        }))
        .await
        .unwrap();
    let updated = f.update(0, &serial, Ends::Confirmed).await;
    assert_eq!(updated.rollback_floor, 2);
    let registry = &f.replicas[0].coordinator.provisioning().registry;
    let evidence = |d: v1::Device| d.clone_evidence;
    assert!(evidence(registry.get_device(PRODUCT, &serial).await.unwrap()).is_empty());

    // The copy (same key) answers its own challenge with the floor the original had before.
    for replica in [1, 0] {
        let package = f.package(replica, &serial).await.unwrap();
        let refused = f
            .client(replica)
            .await
            .report_update(f.request(f.report(&serial, &package.challenge, Ends::RolledBack)))
            .await
            .expect_err("a receipt no single device can send after the first");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains("rollback floor 1, below the 2"),
            "{}",
            refused.message()
        );
    }
    let shown = evidence(registry.get_device(PRODUCT, &serial).await.unwrap());
    assert_eq!(shown.len(), 1, "written once: {shown:?}");
    assert!(shown[0].contains("status receipt went back"), "{shown:?}");
    let audit = f.replicas[0]
        .coordinator
        .audit()
        .list("global", 100)
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "clone evidence")
            .count(),
        1
    );
    // The device record kept what the genuine receipt showed.
    let status = f.update(0, &serial, Ends::Confirmed).await;
    assert_eq!(
        (status.rollback_floor, status.state.as_str()),
        (2, "updated")
    );
    for r in f.replicas {
        r.stop().await;
    }
}
