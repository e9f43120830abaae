//! The global flags every group shares (`--endpoint`, `--token`, `-o`), refused before anything
//! is sent when they cannot work.

use crate::support::{code, flashgate, stderr, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_tokens_that_cannot_work_are_usage_errors() {
    let w = World::start().await;
    let home = w.cli.dir().to_owned();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        flashgate(&home, &[], &args)
    };
    for endpoint in ["127.0.0.1:7400", "not a url", "http://"] {
        let out = run(&["--endpoint", endpoint, "product", "list"]);
        assert_eq!(code(&out), 2, "{endpoint}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is not a URL like https://host:7400"),
            "{}",
            stderr(&out)
        );
    }
    // A token a header cannot carry: said before sending, and the token is not echoed.
    for token in ["line\nbreak", "caf\u{e9}"] {
        let out = run(&[
            "--endpoint",
            &w.tc.endpoint,
            "--token",
            token,
            "product",
            "list",
        ]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the operator token cannot be sent"),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains(token));
    }
    // The right token in the environment works like the flag.
    let envs = [
        ("FLASHGATE_ENDPOINT".to_string(), w.tc.endpoint.clone()),
        ("FLASHGATE_TOKEN".to_string(), w.tc.operator_token.clone()),
    ];
    let out = flashgate(
        &home,
        &envs,
        &["product".into(), "list".into(), "-o".into(), "json".into()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    w.tc.stop().await;
}
