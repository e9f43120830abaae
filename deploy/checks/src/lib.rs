//! Deployment checks, run as tests: `cargo nextest run -p flashgate-deploy-checks`.
//!
//! The test in `tests/helm_chart.rs` runs `deploy/helm/check.py` with the tools that
//! `deploy/helm/setup-venv.sh` installs into `target/helm-venv` (`scripts/setup.sh` calls it).

use std::path::PathBuf;

/// The repository root (this crate lives in `deploy/checks`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}
