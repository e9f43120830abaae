//! The Helm chart passes `deploy/helm/check.py`: Helm lint (strict), render of every values
//! file in `deploy/helm/ci/`, the chart's promised properties, Kubernetes schema validation
//! and checkov with only the justified skips. No cluster is involved.

use std::process::Command;

#[test]
fn helm_chart_lints_renders_validates_and_passes_checkov() {
    let root = flashgate_deploy_checks::repo_root();
    let python = root.join("target/helm-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run deploy/helm/setup-venv.sh (scripts/setup.sh does)",
        python.display()
    );
    let output = Command::new(&python)
        .arg(root.join("deploy/helm/check.py"))
        .current_dir(&root)
        .output()
        .expect("running deploy/helm/check.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "deploy/helm/check.py failed ({}); its output is above",
        output.status
    );
    assert!(
        stdout.contains("helm chart checks: all passed"),
        "deploy/helm/check.py exited 0 without its success line"
    );
}

/// The dashboard check reads the metric names from the sources: a query naming a metric or a
/// label nobody exports must fail it, and the shipped dashboard must pass it.
#[test]
fn dashboard_check_refuses_unknown_metrics_and_labels() {
    let root = flashgate_deploy_checks::repo_root();
    let python = root.join("target/helm-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run deploy/helm/setup-venv.sh",
        python.display()
    );
    let shipped = root.join("deploy/helm/flashgate/dashboards/flashgate-overview.json");
    let text = std::fs::read_to_string(&shipped).expect("the shipped dashboard");
    let check = |file: &std::path::Path| {
        Command::new(&python)
            .arg(root.join("deploy/helm/check.py"))
            .arg("--dashboard")
            .arg(file)
            .output()
            .expect("running check.py --dashboard")
    };
    let good = check(&shipped);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );

    let dir = std::env::temp_dir().join(format!("flashgate-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (what, broken) in [
        (
            "unknown metric",
            text.replacen(
                "flashgate_station_devices_total",
                "flashgate_station_devices_made_total",
                1,
            ),
        ),
        (
            "unknown label",
            text.replacen("sum by (step, at_fault)", "sum by (step, culprit)", 1),
        ),
        ("not JSON", text.replacen('{', "", 1)),
    ] {
        assert_ne!(broken, text, "{what}: the edit must change the dashboard");
        let file = dir.join("dashboard.json");
        std::fs::write(&file, broken).expect("write the broken dashboard");
        let out = check(&file);
        assert!(
            !out.status.success(),
            "{what}: check.py --dashboard passed a broken dashboard:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
