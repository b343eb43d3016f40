//! The commands that run a plugin on this machine, without a host: `check`, `test`,
//! `translate`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use dragoman::fixtures::{self, Verdict};
use dragoman::plugin::{Loaded, Plugin, PluginConfig, TranslateError, VendorMessage};
use serde_json::json;

pub(crate) fn check(loaded: &Loaded) -> Result<ExitCode> {
    let plugin = match loaded {
        Loaded::Translator(plugin) => plugin,
        Loaded::Projector(projector) => {
            let info = projector.info();
            println!("projector:          {}", info.name);
            println!("version:            {}", info.version);
            println!("entity type:        {}", info.entity_type);
            println!(
                "contract:           {}",
                dragoman::plugin::PROJECTOR_CONTRACT
            );
            println!("sha256:             {}", projector.id().sha256);
            return Ok(ExitCode::SUCCESS);
        }
    };
    let info = plugin.info();
    let directions = plugin.directions();
    let list: Vec<&str> = [
        ("inbound", directions.inbound),
        ("outbound", directions.outbound),
    ]
    .into_iter()
    .filter_map(|(name, yes)| yes.then_some(name))
    .collect();
    println!("plugin:             {}", info.name);
    println!("version:            {}", info.version);
    println!("vendor api version: {}", info.vendor_api_version);
    println!("contract:           {}", dragoman::plugin::CONTRACT);
    println!("directions:         {}", list.join(", "));
    println!("sha256:             {}", plugin.id().sha256);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn test(loaded: &Loaded, found: &[fixtures::Fixture]) -> Result<ExitCode> {
    let (mut passed, mut failed) = (0, 0);
    for fixture in found {
        let verdict = match loaded {
            Loaded::Translator(plugin) => fixtures::run(plugin, fixture),
            Loaded::Projector(projector) => fixtures::fold::run(projector, fixture),
        }
        .map_err(dragoman::Error::from)?;
        if verdict == Verdict::Pass {
            passed += 1;
        } else {
            failed += 1;
        }
        print_verdict(&fixture.name, &verdict);
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One fixture's line (`ok   NAME`, or `FAIL NAME` and its diff, indented), as `plugin test`
/// and `plugin dev` print it.
pub(crate) fn print_verdict(name: &str, verdict: &Verdict) {
    match verdict {
        Verdict::Pass => println!("ok   {name}"),
        Verdict::Fail { diff } => {
            println!("FAIL {name}");
            for line in diff.lines() {
                println!("     {line}");
            }
        }
    }
}

pub(crate) fn translate(
    plugin: &Plugin,
    content_type: Option<String>,
    config: PluginConfig,
    body: Vec<u8>,
) -> Result<ExitCode> {
    let message = VendorMessage {
        id: "cli".into(),
        content_type,
        headers: Vec::new(),
        body,
    };
    let config = Arc::new(config);
    let outcome = plugin.session(config).and_then(|mut session| {
        let key = session.idempotency_key(&message)?;
        Ok((key, session.translate(&message)?))
    });
    let (key, result) = match outcome {
        Ok(outcome) => outcome,
        Err(fault) => {
            // The plugin failed, not the command line: exit 1, as for a refusal.
            eprintln!("dragoman: {fault}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match result {
        Ok(events) => {
            let out = json!({"idempotency_key": key, "events": events});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            let (kind, failure) = match refusal {
                TranslateError::Rejected(f) => ("rejected", f),
                TranslateError::Transient(f) => ("transient", f),
            };
            let out =
                json!({"error": {"kind": kind, "code": failure.code, "message": failure.message}});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) fn parse_config(entries: &[String]) -> Result<PluginConfig> {
    let mut config = PluginConfig::new();
    for entry in entries {
        let Some((key, value)) = entry.split_once('=') else {
            bail!("--config `{entry}` is not KEY=VALUE");
        };
        if key.is_empty() {
            bail!("--config `{entry}` has an empty key");
        }
        config.insert(key.to_owned(), value.to_owned());
    }
    Ok(config)
}
