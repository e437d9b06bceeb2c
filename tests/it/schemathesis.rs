//! The API against its own OpenAPI document, checked by a third-party tool:
//! schemathesis (PyPI, pinned in `scripts/schemathesis-env`) generates valid and invalid
//! requests for every operation of `GET /api/v1/openapi.json` and runs all its checks
//! (no 5xx, every status and header documented, responses matching their schemas,
//! invalid data refused, valid data accepted, 405 with `Allow` for undocumented
//! methods, …) as a logged-in API session, with a capture-scope token, and with no token.
//!
//! Where schemathesis is: `CV_SCHEMATHESIS`, else `target/schemathesis-env/bin/schemathesis`.
//! Without it the test is skipped, saying so, unless `CV_REQUIRE_SCHEMATHESIS=1` (set by
//! `scripts/test`), which makes a missing schemathesis a failure. The generation seed is
//! fixed (`CV_SCHEMATHESIS_SEED` overrides it) and printed, so a failure can be replayed.

use std::path::PathBuf;
use std::process::Command;

use crate::api::api_login;
use crate::support::*;

/// Test cases per operation and phase: enough for the coverage phase's boundary values
/// and some fuzzing, small enough for a few minutes on 2 cores.
const MAX_EXAMPLES: &str = "50";

/// The seed when `CV_SCHEMATHESIS_SEED` is not set.
const DEFAULT_SEED: &str = "20261207";

/// Wall-clock bound of one schemathesis run, in seconds (a run takes about 10 s on the
/// reference machine); `timeout` kills it after this.
const RUN_TIMEOUT_SECS: &str = "300";

fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("CV_SCHEMATHESIS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/schemathesis-env/bin/schemathesis")
        },
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    let reason = format!(
        "schemathesis is not at {} (make it with scripts/schemathesis-env, or set CV_SCHEMATHESIS)",
        path.display()
    );
    if std::env::var("CV_REQUIRE_SCHEMATHESIS").as_deref() == Ok("1") {
        panic!("CV_REQUIRE_SCHEMATHESIS=1 but {reason}");
    }
    println!("skipped: {reason}");
    None
}

/// One `schemathesis run` with every check against the appliance's document, with
/// `token` as the bearer token if any; panics with its report if it finds a failure.
fn run(st: &std::path::Path, app: &cv_testkit::TestAppliance, who: &str, token: Option<&str>) {
    let seed = std::env::var("CV_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let report_dir = app.dir.path().join(format!("schemathesis-{who}"));
    let mut cmd = Command::new("timeout");
    // Its cache of crashes (`.schemathesis/`) goes to the test's directory, not the
    // repository's.
    cmd.current_dir(app.dir.path())
        .args(["--kill-after=10", RUN_TIMEOUT_SECS])
        .arg(st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(app.url("/api/v1/openapi.json"))
        .arg("--tls-verify")
        .arg(app.layout().tls_dir().join("ca.crt"))
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed])
        // One worker: the runs share the machine with the appliance; and the order of
        // operations (POST /lock among them) stays the same from run to run.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .arg("--no-color")
        .arg("--report-dir")
        .arg(&report_dir)
        // Its own database of examples would make a later run differ from this one.
        .args(["--generation-database", "none"]);
    if let Some(token) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("== schemathesis as {who} (seed {seed}) ==\n{report}");
    assert!(
        out.status.success(),
        "schemathesis as {who} (seed {seed}) found failures or could not run (exit {:?}):\n{report}",
        out.status.code()
    );
    assert!(
        report.contains("Seed: ") && report.contains("generated"),
        "no schemathesis summary:\n{report}"
    );
}

#[tokio::test]
async fn the_api_passes_every_schemathesis_check_with_and_without_credentials() {
    let Some(st) = schemathesis() else { return };
    let app = appliance_with_owner().await;
    let capture = create_token(&app, OWNER, "capture", "schemathesis");
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    // The runs block this thread; the appliance is another process.
    run(&st, &app, "an API session", Some(&session));
    run(&st, &app, "a capture token", Some(&capture));
    run(&st, &app, "nobody", None);
}
