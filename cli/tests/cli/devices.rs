//! `flashgate devices list|show`: the registry, as a table and as JSON, filters, exit codes.

use serde_json::Value;

use crate::support::{code, flashgate, json, stdout, table_rows, Env, World};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_listed_and_filtered() {
    let w = World::start().await;
    let (a, b) = ([0xa1; 16], [0xb2; 16]);
    let (order, lease) = w.fleet(&[a, b]).await;
    let listed = w.cli.json(&["devices", "list", "--order", &order]).await;
    let serials: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials.len(), 2);
    assert!(
        serials.contains(&hex::encode(a).as_str()) && serials.contains(&hex::encode(b).as_str())
    );
    assert_eq!(listed[0]["lease_id"], lease.as_str());
    assert_eq!(listed[0]["outcome"], "provisioned");
    assert_eq!(listed[0]["test_log"], "all checks pass");

    let one = w
        .cli
        .json(&["devices", "list", "--serial", &hex::encode(b)])
        .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["serial"], hex::encode(b).as_str());
    let limited = w.cli.json(&["devices", "list", "--limit", "1"]).await;
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let later = w
        .cli
        .json(&["devices", "list", "--since", &(i64::MAX / 2).to_string()])
        .await;
    assert_eq!(later, Value::Array(vec![]));

    let (header, rows) = table_rows(&w.cli.table(&["devices", "list", "--product", "7"]).await);
    assert_eq!(
        header,
        "SERIAL, PRODUCT, ORDER, STATION, INSTALLED, BOOTLOADER, OS, TEST"
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][1..3], ["7", order.as_str()]);
    assert_eq!(rows[0][5..], ["1", "-", "pass"]);
    assert!(w
        .cli
        .fails(&["devices", "list", "--serial", "12"], 2)
        .await
        .contains("32 hex characters"));
    w.tc.stop().await;
}
