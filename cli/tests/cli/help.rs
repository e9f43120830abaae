//! `--help` for every subcommand, found by walking the binary's own help (so a new command is
//! covered without editing this file, and a documented one cannot disappear unnoticed), and
//! every command run with no arguments against a dead coordinator: none may panic.

use std::collections::BTreeSet;

use crate::support::{code, flashgate, stderr, stdout, DEAD};

/// The commands docs/coordinator.md documents ("Operator CLI").
const DOCUMENTED: &[&str] = &[
    "product create",
    "product list",
    "product rotate-authority",
    "release upload",
    "release list",
    "order create",
    "order cancel",
    "operator create",
    "operator list",
    "operator revoke",
    "audit list",
    "audit verify",
    "station bundle",
    "orders status",
    "station list",
    "station approve",
    "station revoke",
    "devices show",
    "devices list",
    "leases list",
    "data tail",
    "data query",
    "data stats",
    "data relay",
    "update publish",
    "update status",
    "update rollout",
    "update list",
    "update pause",
    "update resume",
    "device update",
    "device app-install",
    "device verify",
    "device send",
    "device messages",
    "config set-context",
    "config use-context",
    "config get-contexts",
    "config current-context",
    "config delete-context",
    "image keygen",
    "image sign",
    "image verify",
    "image inspect",
    "completion",
];

/// The names under `Commands:` in a help text (clap's `help` pseudo-command left out).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

fn run(home: &std::path::Path, args: &[String]) -> std::process::Output {
    flashgate(home, &[("FLASHGATE_ENDPOINT".into(), DEAD.into())], args)
}

#[test]
fn every_subcommand_has_help_and_none_panics_without_arguments() {
    let home = tempfile::tempdir().unwrap();
    let mut leaves = BTreeSet::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = queue.pop() {
        for flag in ["--help", "-h"] {
            let mut args = path.clone();
            args.push(flag.into());
            let out = run(home.path(), &args);
            assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
            let usage = format!(
                "Usage: {}",
                ["flashgate"]
                    .iter()
                    .copied()
                    .chain(path.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            assert!(stdout(&out).contains(&usage), "{args:?}:\n{}", stdout(&out));
        }
        let mut args = path.clone();
        args.push("--help".into());
        let children = subcommands(&stdout(&run(home.path(), &args)));
        if children.is_empty() {
            leaves.insert(path.join(" "));
        }
        for child in children {
            let mut next = path.clone();
            next.push(child);
            queue.push(next);
        }
    }
    let documented: BTreeSet<String> = DOCUMENTED.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        leaves, documented,
        "the binary's commands and the documented ones differ"
    );

    // Bare: a usage error (2), the dead coordinator (3), no context yet (4), or success for
    // what needs nothing (`config get-contexts`) — never a panic (101).
    for leaf in &leaves {
        let args: Vec<String> = leaf.split(' ').map(String::from).collect();
        let out = run(home.path(), &args);
        let message = stderr(&out);
        assert!(!message.contains("panicked"), "{leaf}: {message}");
        assert!(
            [0, 2, 3, 4].contains(&code(&out)),
            "{leaf}: exit {}: {message}",
            code(&out)
        );
        if code(&out) == 3 {
            assert!(
                message.contains("cannot reach the coordinator at http://127.0.0.1:1"),
                "{leaf}: {message}"
            );
        }
    }
}

#[test]
fn help_lists_the_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let help = stdout(&run(home.path(), &["--help".to_string()]));
    assert!(help.contains("Exit codes: 0 ok, 2 usage, 3 unreachable/unavailable, 4 not found, 5 unauthenticated/denied, 6 already exists, 7 invalid or refused, 8 device unregistered, 9 clone suspected (device verify), 1 other"), "{help}");
    let version = run(home.path(), &["--version".to_string()]);
    assert_eq!(code(&version), 0);
    assert!(stdout(&version).starts_with("flashgate "));
}
