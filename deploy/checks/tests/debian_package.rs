//! The station's Debian package (`deploy/station/package-deb.sh`): it builds from the
//! workspace's station binary and loader, holds what the unit and the docs name, and — where
//! the test runs as root, as CI does — installs with `dpkg -i`, makes the service user and the
//! KEK credential, passes `systemd-analyze verify`, runs in the foreground against its own
//! installed configuration and loader, keeps an edited conffile on reinstall, and removes
//! cleanly while keeping the station's state.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PACKAGE: &str = "flashgate-station";

#[test]
fn the_station_package_builds_installs_verifies_and_removes() {
    let root = flashgate_deploy_checks::repo_root();
    let binary = workspace_binary("flashgate-station");
    let loader = root.join("target/firmware/loader.bin");
    assert!(
        loader.exists(),
        "{} is missing: run `cargo xtask firmware`",
        loader.display()
    );
    let out = tempfile::tempdir().unwrap();
    let built = run(Command::new(root.join("deploy/station/package-deb.sh"))
        .arg("--binary")
        .arg(&binary)
        .arg("--loader")
        .arg(&loader)
        .arg("--out")
        .arg(out.path()));
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert!(deb.exists(), "no package at {}", deb.display());

    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/flashgate-station",
        "./usr/sbin/flashgate-station-admin",
        "./usr/share/flashgate/loader.bin",
        "./usr/lib/systemd/system/flashgate-station.service",
        "./usr/lib/udev/rules.d/70-flashgate-probes.rules",
        "./usr/lib/flashgate-station/host-setup",
        "./etc/flashgate/station.toml",
        "./usr/share/doc/flashgate/operations.md",
        "./usr/share/doc/flashgate-station/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing from the package:\n{contents}"
        );
    }
    let conffiles = text(&run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles")));
    assert_eq!(conffiles.trim(), "/etc/flashgate/station.toml");

    // The unit as packaged names the packaged binary, and verifies against the unpacked tree.
    let unpacked = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path()));
    let unit = std::fs::read_to_string(
        unpacked
            .path()
            .join("usr/lib/systemd/system/flashgate-station.service"),
    )
    .unwrap();
    assert!(unit
        .contains("ExecStart=/usr/bin/flashgate-station run --config /etc/flashgate/station.toml"));
    assert!(
        !unit.contains("/usr/local/"),
        "the packaged unit names /usr/local"
    );

    if !is_root() {
        eprintln!(
            "not root: `dpkg -i` and the installed checks are skipped (CI runs them as root)"
        );
        return;
    }
    if installed() {
        eprintln!("{PACKAGE} is already installed on this machine: not touching it");
        return;
    }
    let _remove = Removal;
    let install = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(
        text(&install).contains("installed, not enabled"),
        "postinst did not say what to do next:\n{}",
        text(&install)
    );
    assert!(installed(), "dpkg -s does not show {PACKAGE} installed");

    // host-setup: the service user in the probe and serial groups, config readable by it only,
    // the KEK made once and root-only.
    let groups = text(&run(Command::new("id").args(["-nG", "flashgate"])));
    for group in ["flashgate", "plugdev", "dialout"] {
        assert!(
            groups.split_whitespace().any(|g| g == group),
            "flashgate not in {group}: {groups}"
        );
    }
    let config = std::fs::metadata("/etc/flashgate/station.toml").unwrap();
    assert_eq!(config.permissions().mode() & 0o777, 0o640);
    assert_eq!(config.uid(), 0);
    let kek = [
        "/etc/credstore.encrypted/flashgate-station-kek",
        "/etc/credstore/flashgate-station-kek",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("postinst made no station KEK");
    assert_eq!(
        std::fs::metadata(kek).unwrap().permissions().mode() & 0o077,
        0,
        "{} is readable by others",
        kek.display()
    );

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg("/usr/lib/systemd/system/flashgate-station.service")
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}{}",
        text(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );

    // In the foreground, with the installed configuration and loader: it gets as far as the
    // missing enrolment and says so.
    let state = tempfile::tempdir().unwrap();
    let kek_file = state.path().join("kek");
    std::fs::write(&kek_file, "11".repeat(32)).unwrap();
    let foreground = Command::new("/usr/bin/flashgate-station")
        .args([
            "run",
            "--config",
            "/etc/flashgate/station.toml",
            "--state-dir",
        ])
        .arg(state.path().join("state"))
        .arg("--kek-file")
        .arg(&kek_file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&foreground.stderr);
    assert!(!foreground.status.success(), "an unenrolled station ran");
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        said.contains("enrol"),
        "the refusal does not point at enrolment: {said}"
    );

    // An edited conffile survives a reinstall.
    let mut edited = std::fs::read_to_string("/etc/flashgate/station.toml").unwrap();
    edited.push_str("\n# edited by the operator\n");
    std::fs::write("/etc/flashgate/station.toml", &edited).unwrap();
    run(Command::new("dpkg")
        .args(["-i", "--force-confold"])
        .arg(&deb));
    assert_eq!(
        std::fs::read_to_string("/etc/flashgate/station.toml").unwrap(),
        edited
    );

    run(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert!(!Path::new("/usr/bin/flashgate-station").exists());
    assert!(
        kek.exists(),
        "purge removed the station KEK (it seals the enrolled identity)"
    );
}

/// Purges the package if the test stops halfway.
struct Removal;

impl Drop for Removal {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
    }
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn is_root() -> bool {
    text(&run(Command::new("id").arg("-u"))).trim() == "0"
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .map_err(|e| format!("{command:?}: {e}"))
        .expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        text(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A binary of the workspace, next to this test's own `deps` directory.
fn workspace_binary(name: &str) -> PathBuf {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|p| p.join(name)))
        .expect("target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p {name}`",
        bin.display()
    );
    bin
}
