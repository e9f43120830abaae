//! The real `flashgate` binary against an in-process coordinator: contexts and their
//! precedence, shell completions, `devices show`, exit codes, `orders status` with failures.

use std::path::Path;
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use flashgate_coordinator::ids::StationId;
use flashgate_coordinator::provisioning::{StationRecord, StationState};
use flashgate_coordinator::testing::TestCoordinator;
use flashgate_proto::v1;
use rand_core::OsRng;
use serde_json::Value;

/// Never reachable: nothing listens on port 1.
const DEAD: &str = "http://127.0.0.1:1";

struct Env {
    tc: TestCoordinator,
    order: v1::Order,
    serial: [u8; 16],
    home: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        let tc = TestCoordinator::start_embedded().await.unwrap();
        let vendor = SigningKey::generate(&mut OsRng);
        let station = StationRecord {
            station_id: StationId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            ed25519_public_key: [1u8; 32],
            x25519_public_key: [9u8; 32],
            name: "cli test".into(),
            factory: "f1".into(),
            state: StationState::Approved,
            enrolled_at_ms: 1,
            approved_at_ms: 1,
        };
        let order = tc
            .create_demo_order(7, &vendor, vec![station.station_id.to_string()], 5)
            .await
            .unwrap();
        let lease = tc
            .coordinator
            .provisioning()
            .leases
            .acquire(
                &station,
                &v1::AcquireLeaseRequest {
                    order_id: order.order_id.clone(),
                    count: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let body = flashgate_proto::lease::verify_signed_lease(
            &lease,
            &tc.coordinator.lease_verifying_key(),
        )
        .unwrap();
        let now = flashgate_proto::clock::now_ms();
        let serial = [0x5a; 16];
        tc.coordinator
            .provisioning()
            .reports
            .report_install(
                &station,
                &v1::ReportInstallRequest {
                    lease_id: body.lease_id.clone(),
                    serial: serial.to_vec(),
                    bootloader_version: 1,
                    test_result: Some(v1::TestResult {
                        outcome: v1::TestOutcome::Pass as i32,
                        log: "all checks pass".into(),
                    }),
                    outcome: v1::InstallOutcome::Provisioned as i32,
                    installed_at_ms: now,
                    failure_reason: String::new(),
                },
            )
            .await
            .unwrap();
        tc.coordinator
            .provisioning()
            .reports
            .report_install(
                &station,
                &v1::ReportInstallRequest {
                    lease_id: body.lease_id,
                    serial: [0x6b; 16].to_vec(),
                    outcome: v1::InstallOutcome::Failed as i32,
                    installed_at_ms: now,
                    failure_reason: "transfer failed: target lost".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        Self {
            tc,
            order,
            serial,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `flashgate ARGS` with only `envs` set among the flashgate variables and the config
    /// under this test's own XDG_CONFIG_HOME.
    async fn run(&self, envs: &[(&str, &str)], args: &[&str]) -> Output {
        let home = self.home.path().to_owned();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || flashgate(&home, &envs, &args))
            .await
            .unwrap()
    }

    fn token_file(&self, token: &str) -> String {
        let path = self.home.path().join(format!("token-{}", token.len()));
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path.display().to_string()
    }
}

fn flashgate(config_home: &Path, envs: &[(String, String)], args: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashgate"));
    for var in [
        "FLASHGATE_ENDPOINT",
        "FLASHGATE_TOKEN",
        "FLASHGATE_CONTEXT",
        "FLASHGATE_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_CONFIG_HOME", config_home);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("the flashgate binary runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    assert_eq!(
        code(output),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_follow_flag_then_env_then_context_precedence() {
    let env = Env::start().await;
    let good_token = env.token_file(&env.tc.operator_token);
    let endpoint = env.tc.endpoint.clone();
    for args in [
        vec![
            "config",
            "set-context",
            "good",
            "--endpoint",
            &endpoint,
            "--token-file",
            &good_token,
        ],
        vec!["config", "set-context", "dead", "--endpoint", DEAD],
        vec!["config", "use-context", "good"],
    ] {
        let out = env.run(&[], &args).await;
        assert_eq!(
            code(&out),
            0,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The config names the token's file, never the token.
    let config = std::fs::read_to_string(env.home.path().join("flashgate/config.toml")).unwrap();
    assert!(config.contains("current-context = \"good\""), "{config}");
    assert!(!config.contains(&env.tc.operator_token));
    let contexts = json(
        &env.run(&[], &["config", "get-contexts", "-o", "json"])
            .await,
    );
    let current: Vec<&str> = contexts
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["current"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(current, ["good"]);
    assert_eq!(
        code(&env.run(&[], &["config", "use-context", "nope"]).await),
        4
    );

    let status = ["orders", "status", "-o", "json"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        extra.iter().chain(status.iter()).copied().collect()
    };
    // Current context: its endpoint and the token from its file.
    let listed = json(&env.run(&[], &status).await);
    assert_eq!(listed[0]["order"]["order_id"], env.order.order_id.as_str());
    // --context beats the current context; FLASHGATE_CONTEXT too; the flag beats the env.
    assert_eq!(
        code(&env.run(&[], &(with(&["--context", "dead"]))).await),
        3
    );
    assert_eq!(
        code(&env.run(&[("FLASHGATE_CONTEXT", "dead")], &status).await),
        3
    );
    json(
        &env.run(
            &[("FLASHGATE_CONTEXT", "dead")],
            &(with(&["--context", "good"])),
        )
        .await,
    );
    // The environment beats the context …
    assert_eq!(
        code(&env.run(&[("FLASHGATE_ENDPOINT", DEAD)], &status).await),
        3
    );
    assert_eq!(
        code(&env.run(&[("FLASHGATE_TOKEN", "wrong")], &status).await),
        5
    );
    // … and the flags beat the environment.
    let mut args = vec!["--endpoint", endpoint.as_str()];
    args.extend(status);
    json(&env.run(&[("FLASHGATE_ENDPOINT", DEAD)], &args).await);
    let mut args = vec!["--token", env.tc.operator_token.as_str()];
    args.extend(status);
    json(&env.run(&[("FLASHGATE_TOKEN", "wrong")], &args).await);
    // No context at all: the built-in default endpoint (nothing listens there in tests … or
    // something might: only check that a dead context is not used).
    assert_eq!(
        code(&env.run(&[], &["config", "delete-context", "good"]).await),
        0
    );
    assert_eq!(code(&env.run(&[], &["config", "current-context"]).await), 4);
    env.tc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_are_printed_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let args = vec!["completion".to_string(), shell.to_string()];
        let out = flashgate(home.path(), &[], &args);
        assert_eq!(code(&out), 0, "{shell}");
        let script = stdout(&out);
        assert!(script.len() > 1000, "{shell}: {script}");
        for word in ["flashgate", "set-context", "orders"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = flashgate(home.path(), &[], &["completion".into(), "tcsh".into()]);
    assert_eq!(code(&out), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_show_and_orders_status_and_exit_codes() {
    let env = Env::start().await;
    let base = [
        "--endpoint",
        env.tc.endpoint.as_str(),
        "--token",
        env.tc.operator_token.as_str(),
    ];
    let run = |args: &[&str]| {
        let mut all = base.to_vec();
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let home = env.home.path().to_owned();
        async move {
            tokio::task::spawn_blocking(move || flashgate(&home, &[], &all))
                .await
                .unwrap()
        }
    };
    let serial = hex::encode(env.serial);

    let shown = json(&run(&["devices", "show", &serial, "-o", "json"]).await);
    assert_eq!(shown["serial"], serial.as_str());
    assert_eq!(shown["bootloader_version"], 1);
    assert_eq!(shown["test_result"], "pass");
    assert_eq!(shown["outcome"], "provisioned");
    assert_eq!(shown["update"]["state"], "none");
    let table = run(&["devices", "show", &serial]).await;
    assert_eq!(code(&table), 0);
    let text = stdout(&table);
    for line in [
        "bootloader version:  1",
        "test result:         pass",
        "last update outcome:",
        "last seen:",
        "os version:",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }

    // Unknown serial: not found (4); a malformed one: usage (2).
    let unknown = run(&["devices", "show", &"ab".repeat(16)]).await;
    assert_eq!(
        code(&unknown),
        4,
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no device"));
    assert_eq!(code(&run(&["devices", "show", "xyz"]).await), 2);
    // The failed target is not a device.
    assert_eq!(code(&run(&["devices", "show", &"6b".repeat(16)]).await), 4);

    // Orders: the failure is counted, not consumed.
    let status = json(&run(&["orders", "status", &env.order.order_id, "-o", "json"]).await);
    assert_eq!(
        (
            &status[0]["consumed"],
            &status[0]["failed"],
            &status[0]["reserved"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(1))
    );
    let table = stdout(&run(&["orders", "status"]).await);
    assert!(table.lines().next().unwrap().contains("FAILED"), "{table}");
    let watched = run(&[
        "orders",
        "status",
        "--watch",
        "--interval",
        "1",
        "--watch-count",
        "2",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(code(&watched), 0);
    let docs: Vec<Value> = stdout(&watched)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1][0]["failed"], 1);

    // Updates: nothing published yet; a bootloader is no OS update; a target is required.
    let none = json(
        &run(&[
            "update",
            "status",
            "--order",
            &env.order.order_id,
            "-o",
            "json",
        ])
        .await,
    );
    assert_eq!(none, Value::Array(vec![]));
    let bootloader = hex::encode(&env.order.bootloader_digest);
    assert_eq!(
        code(&run(&["update", "publish", "--release", &bootloader, "--all"]).await),
        7
    );
    assert_eq!(
        code(&run(&["update", "publish", "--release", &bootloader]).await),
        2
    );
    // A wrong token: 5.
    let out = flashgate(
        env.home.path(),
        &[],
        &[
            "--endpoint",
            &env.tc.endpoint,
            "--token",
            "guess",
            "devices",
            "show",
            &serial,
        ]
        .map(String::from),
    );
    assert_eq!(code(&out), 5);
    env.tc.stop().await;
}
