//! The command line refuses limits that cannot work, with the library's message naming the
//! field, and a flag for a protocol other than the one served, before it listens.

use fixtures::process::ServeCommand;

/// Start `tcp-reactor serve <args>` and return why it did not start listening.
#[track_caller]
fn refusal(args: &[&str]) -> String {
    match ServeCommand::default().args(args).spawn() {
        Ok(server) => panic!("tcp-reactor serve {args:?} is listening on {}", server.addr),
        Err(err) => err.to_string(),
    }
}

#[test]
fn zero_workers_is_refused_by_name() {
    let why = refusal(&["--workers", "0"]);
    assert!(why.contains("exit status: 1"), "{why}");
    assert!(
        why.contains(
            "tcp-reactor: error: invalid configuration: workers must be greater than zero"
        ),
        "{why}"
    );
}

#[test]
fn watermarks_above_the_output_cap_are_refused_by_name() {
    let why = refusal(&[
        "--low-water",
        "1024",
        "--high-water",
        "2048",
        "--max-output",
        "1024",
    ]);
    assert!(why.contains("exit status: 1"), "{why}");
    assert!(
        why.contains("high_water (2048) must not exceed max_output (1024)"),
        "{why}"
    );
}

#[test]
fn a_store_bound_for_a_protocol_without_a_store_is_refused() {
    let why = refusal(&["--protocol", "echo", "--max-store", "1000000"]);
    assert!(why.contains("exit status: 1"), "{why}");
    assert!(
        why.contains("--max-store applies to --protocol resp only"),
        "{why}"
    );
}
