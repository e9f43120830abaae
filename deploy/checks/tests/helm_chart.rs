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
