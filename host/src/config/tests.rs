use std::path::Path;
use std::time::Duration;

use super::*;

const GOOD: &str = r#"
listen = "127.0.0.1:0"
data_dir = "data"

[sinks.hook]
type = "http"
url = "http://127.0.0.1:9/events"

[routes.orders]
plugin = "orders.wasm"
sinks = ["hook"]
plugin_config = { currency = "JPY" }
retry = { max_attempts = 3 }
"#;

#[test]
fn a_good_config_resolves_paths_and_defaults() {
    let config = Config::parse(GOOD, Path::new("/etc/dragoman")).unwrap();
    let route = &config.routes["orders"];
    assert_eq!(route.plugin, Path::new("/etc/dragoman/orders.wasm"));
    assert_eq!(config.data_dir, Path::new("/etc/dragoman/data"));
    assert_eq!(config.cache_dir, Path::new("/etc/dragoman/data/compiled"));
    assert_eq!(route.plugin_config["currency"], "JPY");
    assert_eq!(route.retry.max_attempts, 3);
    assert_eq!(
        route.retry.max_duration,
        Duration::from_secs(6 * 3600),
        "the time budget by default"
    );
    assert_eq!(route.retention, DEFAULT_RETENTION);
    assert_eq!(config.max_body, DEFAULT_MAX_BODY);
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let text = GOOD.replace("retry = { max_attempts = 3 }", "retyr = 3");
    let error = Config::parse(&text, Path::new(".")).unwrap_err();
    assert!(
        error.contains("retyr") && error.contains("line 13"),
        "{error}"
    );
}

#[test]
fn missing_keys_are_named() {
    let text = GOOD.replace("listen = \"127.0.0.1:0\"", "");
    let error = Config::parse(&text, Path::new(".")).unwrap_err();
    assert!(error.contains("missing field `listen`"), "{error}");
}

#[test]
fn an_unknown_sink_is_named_with_its_line() {
    let text = GOOD.replace("sinks = [\"hook\"]", "sinks = [\"hook\", \"nope\"]");
    let error = Config::parse(&text, Path::new(".")).unwrap_err();
    assert!(
        error.contains("`nope`") && error.starts_with("line 11"),
        "{error}"
    );
}

#[test]
fn backoff_grows_to_its_cap_and_jitter_only_shortens() {
    let policy = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        multiplier: 2,
        ..RetryPolicy::default()
    };
    let waits: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(
        policy.backoff_with_jitter(3, 0.0),
        Duration::from_millis(400)
    );
    assert_eq!(
        policy.backoff_with_jitter(3, 0.5),
        Duration::from_millis(360)
    );
    assert!(policy.backoff_with_jitter(3, 0.999) > Duration::from_millis(320));
}

#[test]
fn a_sinks_retry_after_is_honoured_up_to_its_ceiling_and_never_past_the_budget() {
    let policy = RetryPolicy {
        max_duration: Duration::from_secs(600),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let secs = |d: Duration| d.as_secs_f64();
    // Shorter than the backoff: the backoff.
    let asked = Some(Duration::from_millis(10));
    assert_eq!(
        policy.wait(1, 0.0, asked, Duration::ZERO),
        Duration::from_millis(100)
    );
    // Longer: honoured.
    let asked = Some(Duration::from_secs(30));
    assert_eq!(secs(policy.wait(1, 0.0, asked, Duration::ZERO)), 30.0);
    // 999,999 s: the ceiling.
    let asked = Some(Duration::from_secs(999_999));
    assert_eq!(secs(policy.wait(1, 0.0, asked, Duration::ZERO)), 60.0);
    // Near the end of the budget: no later than its end.
    let failing_for = Duration::from_secs(590);
    assert_eq!(secs(policy.wait(1, 0.0, asked, failing_for)), 10.0);
    assert_eq!(
        policy.wait(9, 0.0, None, Duration::from_secs(601)),
        Duration::ZERO
    );
}

#[test]
fn the_retry_after_ceiling_defaults_to_the_larger_of_max_backoff_and_a_minute() {
    let ceiling = |retry: &str| {
        let text = GOOD.replace("max_attempts = 3", &format!("max_attempts = 3{retry}"));
        let config = Config::parse(&text, Path::new(".")).unwrap();
        config.routes["orders"].retry.max_retry_after
    };
    assert_eq!(ceiling(""), Duration::from_secs(60));
    assert_eq!(
        ceiling(", max_backoff_ms = 300000"),
        Duration::from_secs(300)
    );
    assert_eq!(
        ceiling(", max_retry_after_ms = 5000"),
        Duration::from_secs(5)
    );
}

#[test]
fn the_quickstart_config_parses_with_its_door() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/dragoman.toml");
    let config = Config::from_file(&path).unwrap();
    let auth = config.routes["erp-cancellations"].auth.as_ref();
    assert_eq!(auth.map(RouteAuth::scheme), Some("bearer"));
    assert!(config.routes["erp-orders"].auth.is_none());
}

#[test]
fn a_route_s_door_takes_exactly_one_scheme_and_names_what_is_wrong() {
    let with = |auth: &str| GOOD.replace("retry = { max_attempts = 3 }", &format!("auth = {auth}"));
    let error = Config::parse(&with("{ bearer = [] }"), Path::new(".")).unwrap_err();
    assert!(
        error.contains("routes.orders.auth.bearer lists no token"),
        "{error}"
    );
    let error = Config::parse(
        &with(r#"{ bearer = ["t"], basic = { user = "u", password = "p" } }"#),
        Path::new("."),
    )
    .unwrap_err();
    assert!(error.contains("exactly one"), "{error}");
    let error = Config::parse(&with(r#"{ bearer = [""] }"#), Path::new(".")).unwrap_err();
    assert!(error.contains("is empty"), "{error}");
    let config = Config::parse(
        &with(r#"{ standard_webhooks = { secret = "whsec_abc" } }"#),
        Path::new("."),
    )
    .unwrap();
    assert!(matches!(
        config.routes["orders"].auth,
        Some(RouteAuth::StandardWebhooks { tolerance, .. }) if tolerance == DEFAULT_TOLERANCE
    ));
    assert_eq!(
        format!("{:?}", config.routes["orders"].auth),
        "Some(RouteAuth(standard_webhooks, [redacted]))"
    );
}

#[test]
fn plugin_config_values_take_the_secret_forms() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("whsec"), "whsec_from_a_file\n").unwrap();
    let text = GOOD.replace(
        "plugin_config = { currency = \"JPY\" }",
        "plugin_config = { currency = \"JPY\", note = \"\", signing_secret = { file = \"whsec\" } }",
    );
    let config = Config::parse(&text, dir.path()).unwrap();
    let values = &config.routes["orders"].plugin_config;
    assert_eq!(values["signing_secret"], "whsec_from_a_file");
    assert_eq!(values["currency"], "JPY");
    assert_eq!(values["note"], "", "a literal may be empty");
    let missing = GOOD.replace(
        "plugin_config = { currency = \"JPY\" }",
        "plugin_config = { signing_secret = { env = \"DRAGOMAN_NO_SUCH_SECRET\" } }",
    );
    let error = Config::parse(&missing, dir.path()).unwrap_err();
    assert!(
        error.contains("routes.orders.plugin_config.signing_secret")
            && error.contains("DRAGOMAN_NO_SUCH_SECRET"),
        "{error}"
    );
}

#[test]
fn the_readme_example_config_parses() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```toml\n").expect("the README shows a config") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the block ends");
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("secrets")).unwrap();
    for (file, secret) in [
        ("admin-token", "change-me"),
        ("hook-token", "t0ken"),
        ("hook-api-key", "k3y"),
        ("erp-token", "t1"),
        ("erp-token-next", "t2"),
    ] {
        std::fs::write(base.path().join("secrets").join(file), secret).unwrap();
    }
    let config = Config::parse(&readme[start..end], base.path()).unwrap();
    let route = &config.routes["erp-orders"];
    assert_eq!(route.sinks, ["webhook", "stream"]);
    assert!(matches!(&route.auth, Some(RouteAuth::Bearer(tokens)) if tokens.len() == 2));
    assert_eq!(route.retry.max_attempts, 8);
    assert_eq!(config.projectors["order"].snapshot_every, 100);
    assert!(
        config.projectors["order"]
            .plugin
            .ends_with("order_fold.wasm")
    );
    assert_eq!(
        config.admin_token.as_ref().map(|t| t.expose()),
        Some("change-me")
    );
    assert!(
        matches!(&config.sinks["stream"], SinkConfig::Nats { stream, .. } if stream == "ORDERS")
    );
    let SinkConfig::Http(HttpSink { auth, headers, .. }) = &config.sinks["webhook"] else {
        panic!("the webhook sink is http");
    };
    assert!(matches!(auth, Some(SinkAuth::Bearer(token)) if token.expose() == "t0ken"));
    assert_eq!(headers[0].0, "x-api-key");
    assert_eq!(headers[0].1.expose(), "k3y");
}

#[test]
fn vendors_and_commands_are_checked() {
    let with = |extra: &str| format!("{GOOD}\n{extra}");
    let good = with(
        "[vendors.acme]\nbase_url = \"https://erp.example/api/\"\n\
         [routes.orders.commands]\nvendor = \"acme\"\ndegradation = \"default\"\n\
         default_answer = { status = \"unknown\" }\n",
    );
    let config = Config::parse(&good, Path::new("/etc")).unwrap();
    assert_eq!(config.vendors["acme"].base_url, "https://erp.example/api");
    assert!(
        config.breakers.contains_key("acme"),
        "a vendor has a breaker"
    );
    let commands = config.routes["orders"].commands.as_ref().unwrap();
    assert_eq!(commands.attempts, 3);
    assert_eq!(commands.timeout, Duration::from_secs(5));
    assert_eq!(
        commands.degradation,
        Degradation::Default(serde_json::json!({"status": "unknown"}))
    );

    for (extra, says) in [
        (
            "[vendors.hook]\nbase_url = \"http://x\"\n",
            "a sink has that name too",
        ),
        (
            "[vendors.acme]\nbase_url = \"ftp://x\"\n",
            "not an http:// or https:// URL",
        ),
        (
            "[vendors.acme]\nbase_url = \"http://u:p@x\"\n",
            "without credentials",
        ),
        (
            "[routes.orders.commands]\nvendor = \"nope\"\n",
            "no `[vendors.nope]`",
        ),
        (
            "[vendors.acme]\nbase_url = \"http://x\"\n[routes.orders.commands]\nvendor = \"acme\"\ndegradation = \"default\"\n",
            "needs a `default_answer`",
        ),
        (
            "[vendors.acme]\nbase_url = \"http://x\"\n[routes.orders.commands]\nvendor = \"acme\"\ndegradation = \"pray\"\n",
            "not one of fail, cached, default, queue",
        ),
    ] {
        let error = Config::parse(&with(extra), Path::new("/etc")).unwrap_err();
        assert!(error.contains(says), "{extra}: {error}");
    }
}

#[test]
fn a_breaker_s_failures_are_configurable() {
    use crate::breaker::Outcome;
    let text = format!(
        "{GOOD}\n[sinks.hook.breaker]\nfailure_statuses = [\"5xx\", \"404\", \"420-421\"]\ncount_no_answer = false\n"
    );
    let config = Config::parse(&text, Path::new("/etc")).unwrap();
    let failures = &config.breakers["hook"].failures;
    assert_eq!(failures.classify(Some(404)), Outcome::Failure);
    assert_eq!(failures.classify(Some(421)), Outcome::Failure);
    assert_eq!(failures.classify(Some(503)), Outcome::Failure);
    assert_eq!(failures.classify(Some(429)), Outcome::Ignored, "not listed");
    assert_eq!(
        failures.classify(None),
        Outcome::Ignored,
        "no answer not counted"
    );
    assert_eq!(failures.classify(Some(204)), Outcome::Success);
    for bad in ["\"6xx\"", "\"abc\"", "\"500-400\"", "\"99\""] {
        let text = format!("{GOOD}\n[sinks.hook.breaker]\nfailure_statuses = [{bad}]\n");
        let error = Config::parse(&text, Path::new("/etc")).unwrap_err();
        assert!(error.contains("failure_statuses"), "{bad}: {error}");
    }
}

#[test]
fn a_projector_table_names_an_entity_type_and_snapshots_at_least_every_event() {
    let base = tempfile::tempdir().unwrap();
    let with = |table: &str| {
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n[routes.r]\nplugin = \"p.wasm\"\n{table}"
        );
        Config::parse(&text, base.path())
    };
    let config = with("[projectors.order]\nplugin = \"f.wasm\"\n").unwrap();
    assert_eq!(
        config.projectors["order"].snapshot_every,
        crate::projection::DEFAULT_SNAPSHOT_EVERY
    );
    let zero = with("[projectors.order]\nplugin = \"f.wasm\"\nsnapshot_every = 0\n").unwrap_err();
    assert!(
        zero.contains("projectors.order.snapshot_every is 0"),
        "{zero}"
    );
    let dotted = with("[projectors.\"order.v1\"]\nplugin = \"f.wasm\"\n").unwrap_err();
    assert!(
        dotted.contains("an entity type is the first segment"),
        "{dotted}"
    );
    let unknown = with("[projectors.order]\nplugin = \"f.wasm\"\nevery = 5\n").unwrap_err();
    assert!(unknown.contains("every"), "{unknown}");
}

#[test]
fn the_store_is_sled_unless_named_and_a_postgres_store_is_checked() {
    assert_eq!(
        Config::parse(GOOD, Path::new(".")).unwrap().store,
        StoreConfig::Sled
    );
    let with = |store: &str| {
        GOOD.replace(
            "data_dir = \"data\"\n",
            &format!("data_dir = \"data\"\nstore = {store}\n"),
        )
    };
    let config = Config::parse(
        &with(r#"{ type = "postgres", url = "postgres://u:pw-4711@db/x" }"#),
        Path::new("."),
    )
    .unwrap();
    match &config.store {
        StoreConfig::Postgres { url, pool } => {
            assert_eq!(url.expose(), "postgres://u:pw-4711@db/x");
            assert_eq!(*pool, DEFAULT_POOL);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{config:?}").contains("pw-4711"),
        "the URL is never shown"
    );
    let error = Config::parse(
        &with(r#"{ type = "postgres", url = "postgres://db/x", pool = 0 }"#),
        Path::new("."),
    )
    .unwrap_err();
    assert!(error.contains("store.pool = 0"), "{error}");
    let error = Config::parse(
        &with(r#"{ type = "postgres", url = { env = "DRAGOMAN_TEST_NO_SUCH_VARIABLE" } }"#),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        error.contains("store.url") && error.contains("DRAGOMAN_TEST_NO_SUCH_VARIABLE"),
        "{error}"
    );
    let error = Config::parse(&with(r#"{ type = "mysql" }"#), Path::new(".")).unwrap_err();
    assert!(error.contains("mysql"), "{error}");
}

#[test]
fn a_jetstream_source_takes_defaults_and_refuses_what_cannot_work() {
    let with =
        |table: &str| format!("{GOOD}\n[routes.orders.source]\ntype = \"jetstream\"\n{table}");
    let base = "url = \"nats://127.0.0.1:4222\"\nstream = \"ERP\"\nsubject = \"erp.orders.>\"\ndurable = \"orders\"\n";
    let config = Config::parse(&with(base), Path::new("/etc/dragoman")).unwrap();
    let Some(SourceConfig::JetStream(source)) = &config.routes["orders"].source else {
        panic!("a JetStream source");
    };
    assert_eq!(
        (
            source.batch,
            source.max_ack_pending,
            source.max_deliver,
            source.ack_wait
        ),
        (128, 1_000, 10, Duration::from_secs(30))
    );
    for (extra, said) in [
        ("batch = 0\n", "batch is 1 to 1024"),
        (
            "batch = 64\nmax_ack_pending = 100\n",
            "less than two batches (128)",
        ),
        (
            "batch = 1024\nmax_ack_pending = 5000\n",
            "two batches (2048) are more than the route admits",
        ),
        ("max_deliver = 0\n", "max_deliver is 1 to 1000"),
        ("ack_wait_secs = 0\n", "ack_wait_secs is 1 to 3600"),
        ("color = \"red\"\n", "unknown field `color`"),
    ] {
        let error = Config::parse(&with(&format!("{base}{extra}")), Path::new("/etc")).unwrap_err();
        assert!(error.contains(said), "{extra}: {error}");
    }
    let bad_stream = base.replace("\"ERP\"", "\"E.R.P\"");
    let error = Config::parse(&with(&bad_stream), Path::new("/etc")).unwrap_err();
    assert!(error.contains("routes.orders.source.stream"), "{error}");
    let bad_url = base.replace("nats://127.0.0.1:4222", "http://127.0.0.1:4222");
    let error = Config::parse(&with(&bad_url), Path::new("/etc")).unwrap_err();
    assert!(error.contains("not a `nats://` address"), "{error}");
}

#[test]
fn checkpoints_need_a_signer_key_and_a_known_sink() {
    let key = crate::checkpoint::SignerKey::generate("dragoman.test").unwrap();
    let with = |section: &str| format!("{GOOD}\n[checkpoints]\n{section}\n");
    let config = Config::parse(
        &with(&format!("key = \"{}\"\nsink = \"hook\"", key.expose())),
        Path::new("."),
    )
    .unwrap();
    let checkpoints = config.checkpoints.unwrap();
    assert_eq!(checkpoints.key.verifier(), key.verifier());
    assert_eq!(checkpoints.interval, DEFAULT_CHECKPOINT_INTERVAL);

    let error = Config::parse(
        &with(&format!("key = \"{}\"\nsink = \"nope\"", key.expose())),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        error.contains("checkpoints.sink") && error.contains("nope"),
        "{error}"
    );

    // A verifier key where the signer key belongs: refused, and the key is not echoed.
    let verifier = key.verifier().to_string();
    let error = Config::parse(
        &with(&format!("key = \"{verifier}\"\nsink = \"hook\"")),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        error.contains("checkpoints.key") && error.contains("PRIVATE+KEY+"),
        "{error}"
    );
    assert!(!error.contains(&verifier), "{error}");

    let error = Config::parse(&with("sink = \"hook\""), Path::new(".")).unwrap_err();
    assert!(error.contains("missing field `key`"), "{error}");
}
