//! `flashgate config …`: contexts, their precedence over the environment and the flags, and
//! their table and JSON output.

use crate::support::{code, json, Env, DEAD};

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
