//! The `http` protocol judged by code we did not write, under every model: the
//! conformance probe (tests/http-probe/probe.py: raw requests, each with the status RFC
//! 9110/9112 require) must pass every case, and h11's strict parser must read keep-alive,
//! pipelined, chunked, HEAD and error exchanges (tests/http-probe/h11_scenarios.py).
//! Each check is skipped, saying so, where python3 (or h11) is missing.

use std::process::Command;

use fixtures::for_each_model;
use fixtures::server::start;
use tcp_reactor::Model;
use tcp_reactor::protocols::Http;

/// The probe directory, from the crate root.
const PROBE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/http-probe");

/// True when `python3` runs and can import `module` (empty: none needed).
fn python_with(module: &str) -> bool {
    let script = format!("import {}", if module.is_empty() { "sys" } else { module });
    let ok = Command::new("python3")
        .args(["-c", &script])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        eprintln!("SKIP: python3 with `{script}` is not available");
    }
    ok
}

/// Run a script of the probe directory with `args`; panic with its output if it fails.
#[track_caller]
fn run_script(script: &str, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .args(["120", "python3"])
        .arg(format!("{PROBE_DIR}/{script}"))
        .args(args)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{text}");
    text
}

fn every_probe_case_gets_its_rfc_status(model: Model) {
    if !python_with("") {
        return;
    }
    let server = start(Http::default(), model);
    let addr = server.local_addr().to_string();
    let text = run_script("probe.py", &["--addr", &addr, "--require-all", &addr]);
    eprintln!("{text}");
    assert!(text.contains(" passed"), "{text}");
}

fn h11_reads_every_exchange(model: Model) {
    if !python_with("h11") {
        return;
    }
    let server = start(Http::default(), model);
    let text = run_script("h11_scenarios.py", &[&server.local_addr().to_string()]);
    assert_eq!(text.matches("ok   ").count(), 6, "{text}");
}

for_each_model!(
    every_probe_case_gets_its_rfc_status,
    h11_reads_every_exchange
);
