//! `docs/getting-started.md` run as written: every `sh` block of the page, in order, as one
//! bash script with the binaries of this build on `PATH` (the page's `sh build` block is the
//! only one skipped, and port 7400 is moved to a free one). A command the page shows that no
//! longer works fails this test; so does a page that stops provisioning or updating the board.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use flashgate_tests::workspace_binary;

/// The page's runnable blocks (` ```sh `), in order; ` ```sh build ` and other tags are not run.
fn runnable_blocks(page: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs the page's blocks as one script in `scratch` (its `mktemp -d` lands there too).
fn run_page(page: &str, scratch: &Path) -> Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = workspace_binary("flashgate", "flashgate-cli")
        .parent()
        .expect("target/<profile>")
        .to_owned();
    for (name, package) in [
        ("flashgate-coordinator", "flashgate-coordinator"),
        ("flashgate-station", "flashgate-station"),
        ("flashgate-board", "flashgate-emulator"),
    ] {
        workspace_binary(name, package);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "set -euo pipefail\n\
         # Background processes the page starts (coordinator, board) stop with the script.\n\
         trap 'kill -INT $(jobs -p) 2>/dev/null || true; wait || true' EXIT\n\
         {}",
        runnable_blocks(page)
            .join("\n")
            .replace("7400", &port.to_string())
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .current_dir(scratch)
        .env("PATH", format!("{}:{path}", bin_dir.display()))
        .env("FW", repo.join("target/firmware"))
        .env("TMPDIR", scratch)
        .env("HOME", scratch);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLASHGATE_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command.output().expect("bash runs")
}

fn page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/getting-started.md");
    std::fs::read_to_string(path).expect("docs/getting-started.md")
}

#[test]
fn the_getting_started_page_runs_as_written() {
    let scratch = tempfile::tempdir().unwrap();
    let out = run_page(&page(), scratch.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the page's commands failed ({})",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The station's progress goes to stderr, results to stdout.
    assert!(
        stderr.contains("provisioned, locked, hello verified, OS 2 running")
            || stdout.contains("provisioned, locked, hello verified, OS 2 running"),
        "the station did not provision the board"
    );
    assert!(
        stdout.contains("updated to version 3"),
        "the device update did not land"
    );
}

/// The test can fail: a page whose first command is misspelt stops at once with its error.
#[test]
fn a_changed_command_on_the_page_fails_it() {
    let page = page();
    assert!(
        runnable_blocks(&page).len() >= 6,
        "the page lost its blocks"
    );
    let broken = page.replacen(
        "flashgate-coordinator gen-key",
        "flashgate-coordinator gen-keys",
        1,
    );
    assert_ne!(broken, page, "the page no longer starts with gen-key");
    let scratch = tempfile::tempdir().unwrap();
    let out = run_page(&broken, scratch.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gen-keys"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
