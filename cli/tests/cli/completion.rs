//! `flashgate completion SHELL`: a script for each shell clap knows, usage error otherwise.

use crate::support::{code, flashgate, stdout};

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
