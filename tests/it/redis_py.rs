//! redis-py (PyPI `redis`, with `hiredis` as its parser when installed) against
//! `tcp-reactor serve --protocol resp` under each model: every implemented command,
//! pipelines, binary values, a 4 MiB value through serve's default limits, and expiry. The
//! checks are in tests/redis_py/check.py. Skipped, saying so, where python3 or redis-py is
//! missing (`.ci/run` installs them).

use std::process::Command;

use fixtures::for_each_model;
use fixtures::process::{ServerProcess, model_arg};
use tcp_reactor::Model;

/// Exit status of check.py when the `redis` module is missing.
const NO_MODULE: i32 = 3;

fn redis_py_gets_right_answers(model: Model) {
    let server = ServerProcess::spawn(&["--protocol", "resp", "--model", model_arg(model)], None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/redis_py/check.py");
    if !std::path::Path::new(script).exists() {
        // The published crate leaves the script out.
        eprintln!("SKIPPED: {script} is missing");
        return;
    }
    let output = match Command::new("python3")
        .arg(script)
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            eprintln!("SKIPPED: python3 could not be run ({err})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(NO_MODULE) {
        eprintln!("SKIPPED: {stdout}(pip install redis hiredis)");
        return;
    }
    eprintln!("{model:?}:\n{stdout}");
    assert!(
        output.status.success(),
        "redis-py checks failed under {model:?}:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

for_each_model!(redis_py_gets_right_answers);
