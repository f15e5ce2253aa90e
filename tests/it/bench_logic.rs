//! The bench's arithmetic, without running a bench: the interleaved schedule, medians and
//! ranges over rounds, the noise classification from recorded `/proc` samples, the
//! agreement of two runs, and publishing a run into `docs/bench/`, from the bench crate
//! (`benches/compare`).

use bench::noise::{LoadAvg, Noise, Snapshot};
use bench::plan::schedule;
use bench::stats::{Spread, paired_ratios};
use bench::{agree, noise, procfs, publish};

#[test]
fn servers_alternate_within_each_round_and_rounds_are_outermost() {
    // Each slot as three digits: round, cell, server.
    let order: Vec<String> = schedule(2, 3, 2)
        .iter()
        .map(|s| format!("{}{}{}", s.round, s.cell, s.server))
        .collect();
    assert_eq!(
        order.join(" "),
        "000 001 002 010 011 012 100 101 102 110 111 112"
    );
}

#[test]
fn every_server_runs_every_cell_once_per_round() {
    let (cells, servers, rounds) = (11, 4, 3);
    let slots = schedule(cells, servers, rounds);
    assert_eq!(slots.len(), cells * servers * rounds);
    for round in 0..rounds {
        for cell in 0..cells {
            let order: Vec<usize> = slots
                .iter()
                .filter(|s| s.round == round && s.cell == cell)
                .map(|s| s.server)
                .collect();
            assert_eq!(order, vec![0, 1, 2, 3], "round {round}, cell {cell}");
        }
    }
    // A cell's rounds lie a whole round apart: cells × servers runs between them.
    let first = slots.iter().position(|s| s.cell == 5 && s.round == 0);
    let second = slots.iter().position(|s| s.cell == 5 && s.round == 1);
    assert_eq!(second.zip(first).map(|(b, a)| b - a), Some(cells * servers));
}

#[test]
fn spread_of_an_odd_count_is_the_middle_value() {
    let s = Spread::of(&[30.0, 10.0, 20.0]);
    assert_eq!(
        s,
        Some(Spread {
            median: 20.0,
            min: 10.0,
            max: 30.0
        })
    );
}

#[test]
fn spread_of_an_even_count_is_the_mean_of_the_middle_two() {
    let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]);
    assert_eq!(
        s,
        Some(Spread {
            median: 2.5,
            min: 1.0,
            max: 4.0
        })
    );
}

#[test]
fn spread_ignores_nan_and_is_none_when_nothing_is_left() {
    assert_eq!(Spread::of(&[]), None);
    assert_eq!(Spread::of(&[f64::NAN]), None);
    assert_eq!(Spread::of(&[f64::NAN, 7.0]).map(|s| s.median), Some(7.0));
    assert_eq!(
        Spread::of(&[5.0]),
        Some(Spread {
            median: 5.0,
            min: 5.0,
            max: 5.0
        })
    );
}

#[test]
fn spread_shows_median_and_range() {
    let s = Spread::of(&[1.234, 2.5, 3.0]).map(|s| s.show(1));
    assert_eq!(s.as_deref(), Some("2.5 (1.2–3.0)"));
}

#[test]
fn ratios_pair_rounds_and_skip_a_zero_denominator() {
    assert_eq!(
        paired_ratios(&[2.0, 4.0, 9.0], &[1.0, 0.0, 3.0]),
        vec![2.0, 3.0]
    );
}

/// `/proc/stat`, the server's and the load generator's `/proc/PID/stat` and
/// `/proc/loadavg`, recorded 2 s apart (before, after) on a 2-CPU machine while compilers
/// ran on both CPUs: an echo server pinned to CPU 0 and `tcp-reactor load` pinned to CPU 1.
const BUSY: [[&str; 4]; 2] = [
    [
        "cpu  102205 7856 38374 64206 1001 0 6651 128 0 0\n\
         cpu0 50729 3960 18629 33297 233 0 3316 60 0 0\n\
         cpu1 51476 3896 19744 30908 767 0 3335 68 0 0\n",
        "20880 (tcp-reactor) S 20864 20864 13476 0 -1 4194304 358 0 0 0 0 7 0 0 20 0 3 0 110637 145707008 1095",
        "20951 (tcp-reactor) S 20864 20864 13476 0 -1 4194304 410 0 0 0 0 7 0 0 20 0 2 0 110668 76718080 1176",
        "33.98 36.08 19.06 198/356 21254\n",
    ],
    [
        "cpu  102425 7856 38511 64206 1001 0 6698 128 0 0\n\
         cpu0 50840 3960 18696 33297 233 0 3340 60 0 0\n\
         cpu1 51585 3896 19814 30908 767 0 3358 68 0 0\n",
        "20880 (tcp-reactor) S 20864 20864 13476 0 -1 4194304 358 0 0 0 1 27 0 0 20 0 3 0 110637 145707008 1095",
        "20951 (tcp-reactor) S 20864 20864 13476 0 -1 4194304 410 0 0 0 0 29 0 0 20 0 2 0 110668 76718080 1176",
        "33.98 36.08 19.06 156/362 21867\n",
    ],
];
/// The busy sample's first half.
const BUSY_BEFORE: [&str; 4] = BUSY[0];
/// The busy sample's second half.
const BUSY_AFTER: [&str; 4] = BUSY[1];

/// A snapshot from its four recorded texts.
#[track_caller]
fn snapshot(texts: [&str; 4]) -> Snapshot {
    Snapshot::parse(texts[0], texts[1], texts[2], texts[3]).expect("recorded sample parses")
}

#[test]
fn recorded_busy_machine_is_noisy() {
    let n = Noise::between(&snapshot(BUSY_BEFORE), &snapshot(BUSY_AFTER));
    // 404 ticks of 2 CPUs, none idle; server 21, load generator 22: others took 361.
    assert!((n.others - 361.0 / 404.0).abs() < 1e-9, "{n:?}");
    assert_eq!(n.steal, 0.0);
    assert!((n.server_busy - 21.0 / 202.0).abs() < 1e-9, "{n:?}");
    assert!((n.load_busy - 22.0 / 202.0).abs() < 1e-9, "{n:?}");
    assert_eq!((n.load1_before, n.load1_after), (33.98, 33.98));
    assert!(n.is_noisy(0.05));
    assert!(n.is_noisy(0.5));
    assert!(!n.is_noisy(0.9));
}

/// Replace field `index` (0-based, whitespace-separated) of every line starting with
/// `prefix`.
fn with_field(text: &str, prefix: &str, index: usize, value: u64) -> String {
    text.lines()
        .map(|line| {
            if !line.starts_with(prefix) {
                return line.to_string();
            }
            let mut f: Vec<String> = line.split_whitespace().map(String::from).collect();
            f[index] = value.to_string();
            f.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The busy sample's second half turned quiet: the CPUs were idle for all but the
/// server's and load generator's ticks, plus `extra` ticks of someone else and `steal`.
fn quiet_after(extra: u64, steal: u64) -> Snapshot {
    let before = snapshot(BUSY_BEFORE);
    // 400 ticks in all: server 21 + load 22 + extra busy (as user), the rest idle.
    let user = before.cpu.user + 43 + extra;
    let idle = before.cpu.idle + 400 - 43 - extra - steal;
    let mut stat = with_field(BUSY_BEFORE[0], "cpu ", 1, user);
    stat = with_field(&stat, "cpu ", 4, idle);
    stat = with_field(&stat, "cpu ", 8, before.cpu.steal + steal);
    Snapshot::parse(&stat, BUSY_AFTER[1], BUSY_AFTER[2], BUSY_AFTER[3]).expect("parses")
}

#[test]
fn quiet_machine_is_not_noisy_and_the_limit_is_exclusive() {
    let before = snapshot(BUSY_BEFORE);
    let quiet = Noise::between(&before, &quiet_after(4, 0));
    assert!((quiet.others - 0.01).abs() < 1e-9, "{quiet:?}");
    assert!(!quiet.is_noisy(0.05));
    let at_limit = Noise::between(&before, &quiet_after(20, 0));
    assert!(!at_limit.is_noisy(0.05), "{at_limit:?}");
    let over = Noise::between(&before, &quiet_after(21, 0));
    assert!(over.is_noisy(0.05), "{over:?}");
}

#[test]
fn steal_counts_as_noise() {
    let n = Noise::between(&snapshot(BUSY_BEFORE), &quiet_after(0, 40));
    assert_eq!(n.others, 0.0);
    assert!((n.steal - 0.1).abs() < 1e-9, "{n:?}");
    assert!(n.is_noisy(0.05));
}

#[test]
fn a_saturated_load_generator_shows_as_a_busy_core() {
    let before = snapshot(BUSY_BEFORE);
    // The load generator used 195 of the 200 ticks one CPU had.
    let after = Snapshot {
        load_ticks: before.load_ticks + 195,
        ..quiet_after(0, 0)
    };
    let n = Noise::between(&before, &after);
    assert!((n.load_busy - 0.975).abs() < 1e-9, "{n:?}");
}

#[test]
fn process_ticks_survive_a_name_with_spaces_and_parentheses() {
    let line = "77 (tokio (rt) w) R 1 1 1 0 -1 0 0 0 0 0 120 35 0 0 20 0 4 0 5 6 7";
    assert_eq!(noise::process_ticks(line), Some(155));
    assert_eq!(noise::process_ticks("77 (short"), None);
}

#[test]
fn loadavg_and_cpu_count_parse() {
    assert_eq!(
        LoadAvg::parse("0.48 0.81 0.42 4/110 15391\n"),
        Some(LoadAvg {
            one: 0.48,
            five: 0.81,
            fifteen: 0.42,
            running: 4
        })
    );
    assert_eq!(noise::cpu_count(BUSY_BEFORE[0]), 2);
    assert_eq!(snapshot(BUSY_BEFORE).cpus, 2);
}

/// A `results.csv` with the columns the agreement reads, and one it does not.
fn results(rows: &[(&str, usize, usize, usize, f64)]) -> String {
    let mut csv = String::from("server,connections,size,pipeline,rounds,msgs_per_sec_median\n");
    for (server, c, s, p, m) in rows {
        csv.push_str(&format!("{server},{c},{s},{p},3,{m}\n"));
    }
    csv
}

#[test]
fn agreement_names_the_worst_cell_symmetrically() {
    let a = agree::medians(
        &results(&[
            ("reactor", 10, 64, 1, 100_000.0),
            ("threads", 10, 64, 1, 50_000.0),
            ("reactor", 100, 64, 16, 1_000_000.0),
        ]),
        agree::MSGS,
    )
    .expect("parses");
    let b = agree::medians(
        &results(&[
            ("reactor", 10, 64, 1, 104_000.0),
            ("threads", 10, 64, 1, 45_000.0),
            ("reactor", 100, 64, 16, 1_010_000.0),
        ]),
        agree::MSGS,
    )
    .expect("parses");
    let (diffs, lonely) = agree::compare(&a, &b);
    assert!(lonely.is_empty());
    let worst = agree::worst(&diffs).expect("three cells");
    assert_eq!(worst.key, "threads, 10 conns, 64 B");
    // 50,000 against 45,000: the larger over the smaller, so swapping the runs agrees.
    assert!((worst.relative() - (50.0 / 45.0 - 1.0)).abs() < 1e-12);
    let (swapped, _) = agree::compare(&b, &a);
    assert_eq!(
        agree::worst(&swapped).map(|d| d.relative()),
        Some(worst.relative())
    );
    let text = agree::render("msg/s", &diffs, &lonely, 0.10);
    assert!(
        text.contains("worst: 11.1% (threads, 10 conns, 64 B); 2 of 3 within 10%"),
        "{text}"
    );
    assert!(
        text.contains("| reactor, 100 conns, 64 B, pipeline 16 | 1000000 | 1010000 | 1.0% |"),
        "{text}"
    );
}

#[test]
fn agreement_lists_cells_only_one_run_has_and_rejects_a_bad_file() {
    let a = agree::medians(&results(&[("reactor", 10, 64, 1, 1.0)]), agree::MSGS).expect("parses");
    let b = agree::medians(&results(&[("threads", 10, 64, 1, 1.0)]), agree::MSGS).expect("parses");
    let (diffs, lonely) = agree::compare(&a, &b);
    assert!(diffs.is_empty());
    assert_eq!(
        lonely,
        vec!["reactor, 10 conns, 64 B", "threads, 10 conns, 64 B"]
    );
    assert!(agree::medians("server,connections\nreactor,1\n", agree::MSGS).is_err());
    assert!(
        agree::medians(
            &results(&[("reactor", 1, 64, 1, 1.0)]).replace(",1\n", ",x\n"),
            agree::MSGS
        )
        .is_err()
    );
    // A column the file does not have is named in the error.
    let missing = agree::medians(&results(&[("reactor", 1, 64, 1, 1.0)]), agree::CPU);
    assert!(missing.is_err_and(|e| e.contains(agree::CPU)));
}

#[test]
fn agreement_of_ratios_pairs_servers_within_each_cell() {
    let run = |threads: f64, tokio: f64| {
        agree::medians(
            &results(&[
                ("reactor", 10, 64, 1, 100_000.0),
                ("threads", 10, 64, 1, threads),
                ("tokio-current", 10, 64, 1, tokio),
                ("reactor", 100, 64, 1, 90_000.0),
                ("threads", 100, 64, 1, 30_000.0),
                // A pair whose second server is missing gives no ratio.
                ("reactor-tls", 10, 64, 1, 70_000.0),
            ]),
            agree::MSGS,
        )
        .expect("parses")
    };
    let a = agree::ratios(&run(50_000.0, 100_000.0), &agree::PAIRS);
    assert_eq!(
        a,
        vec![
            ("reactor / threads, 10 conns, 64 B".to_string(), 2.0),
            ("reactor / tokio-current, 10 conns, 64 B".to_string(), 1.0),
            ("reactor / threads, 100 conns, 64 B".to_string(), 3.0),
        ]
    );
    // The machine ran 20% slower for every server: the ratios still agree.
    let slower = agree::ratios(
        &run(40_000.0, 80_000.0)
            .into_iter()
            .map(|(k, v)| (k, if v == 100_000.0 { 80_000.0 } else { v }))
            .collect::<Vec<_>>(),
        &agree::PAIRS,
    );
    let (diffs, lonely) = agree::compare(&a, &slower);
    assert!(lonely.is_empty());
    assert!(diffs[0].relative() < 1e-12 && diffs[1].relative() < 1e-12);
    let text = agree::render("ratio", &diffs, &lonely, 0.10);
    assert!(
        text.contains("| reactor / threads, 10 conns, 64 B | 2.00 | 2.00 | 0.0% |"),
        "{text}"
    );
}

#[test]
fn publishing_replaces_only_the_block_between_the_markers() {
    let page = format!(
        "# title\n\nbefore\n\n{}\n\nold figures\n\n{}\n\nafter\n",
        publish::BEGIN,
        publish::END
    );
    let updated = publish::replace_block(&page, "| new | table |\n").expect("markers found");
    assert_eq!(
        updated,
        format!(
            "# title\n\nbefore\n\n{}\n\n| new | table |\n{}\n\nafter\n",
            publish::BEGIN,
            publish::END
        )
    );
    // Publishing twice gives the same page.
    assert_eq!(
        publish::replace_block(&updated, "| new | table |\n").as_ref(),
        Ok(&updated)
    );
    assert!(publish::replace_block("no markers", "x").is_err());
    assert!(publish::replace_block(&format!("{}\nno end", publish::BEGIN), "x").is_err());
}

/// A report shaped as `report.rs` writes one, with `verdict` in its conditions.
fn report(profile: &str, verdict: &str) -> String {
    format!(
        "# tcp-reactor benchmark\n\n## Conditions\n\n- date: D (took 1 min)\n\
         - {profile} profile: 11 cells\n- verdict: **{verdict}**: ...\n\n\
         ## Results\n\n| every | result |\n\n\
         ## Reactor compared\n\nRatios.\n\n| ratio | table |\n\n\
         ## Idle connections\n\n| idle | table |\n\n\
         ## Charts\n\n![a](a.svg)\n![b](b.svg)\n"
    )
}

#[test]
fn the_summary_quotes_date_verdict_ratios_idle_memory_and_links_the_charts() {
    assert_eq!(
        publish::summary(&report("full", "quiet")).as_deref(),
        Ok("- date: D (took 1 min)\n- verdict: **quiet**: ...\n\n\
            ### Reactor compared\n\nRatios.\n\n| ratio | table |\n\n\
            ### Idle connections\n\n| idle | table |\n\n\
            Charts: [a](a.svg) · [b](b.svg)\n")
    );
    let without_idle = report("full", "quiet").replace("## Idle connections", "## Idle");
    assert!(publish::summary(&without_idle).is_err());
    assert!(publish::summary("# no sections\n").is_err());
}

#[test]
fn the_committed_summary_is_what_publishing_writes_from_the_committed_report() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench");
    let report = std::fs::read_to_string(docs.join("report.md")).expect("docs/bench/report.md");
    let page = std::fs::read_to_string(docs.join(publish::SUMMARY_PAGE)).expect("summary page");
    let summary = publish::summary(&report).expect("the published report has every section");
    assert_eq!(
        publish::replace_block(&page, &summary).as_ref(),
        Ok(&page),
        "docs/bench/{} is out of date with docs/bench/report.md",
        publish::SUMMARY_PAGE
    );
}

/// A directory under the system's temporary directory, removed when dropped (also when a
/// test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "tcp-reactor-bench-logic-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn publishing_writes_only_under_the_docs_directory() {
    use std::fs;
    let tmp = TempDir::new("publish");
    let (run, root) = (tmp.0.join("run"), tmp.0.join("repo"));
    let docs = root.join("docs/bench");
    fs::create_dir_all(&run).expect("run dir");
    fs::create_dir_all(&docs).expect("docs dir");
    fs::write(run.join("report.md"), report("full", "quiet")).expect("report");
    for (name, text) in [
        ("results.csv", "r"),
        ("runs.csv", "r"),
        ("idle.csv", "i"),
        ("a.svg", "<svg>a</svg>"),
        ("b.svg", "<svg>b</svg>"),
        ("notes.txt", "not published"),
    ] {
        fs::write(run.join(name), text).expect("run file");
    }
    let page = format!(
        "# Figures\n\n{}\nold\n{}\n\nafter\n",
        publish::BEGIN,
        publish::END
    );
    fs::write(docs.join(publish::SUMMARY_PAGE), &page).expect("page");
    fs::write(docs.join("old.svg"), "<svg>old</svg>").expect("old chart");
    let readme = "# The README: publishing must not touch it\n";
    fs::write(root.join("README.md"), readme).expect("readme");

    publish::publish(&run, &docs, false).expect("a quiet full run is published");

    let mut names: Vec<String> = fs::read_dir(&docs)
        .expect("docs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "a.svg",
            "b.svg",
            "idle.csv",
            "report.md",
            "results.csv",
            "runs.csv"
        ]
    );
    let updated = fs::read_to_string(docs.join(publish::SUMMARY_PAGE)).expect("page");
    assert!(
        updated.contains("### Reactor compared\n\nRatios."),
        "{updated}"
    );
    assert!(
        updated.ends_with(&format!("{}\n\nafter\n", publish::END)),
        "{updated}"
    );
    assert!(!updated.contains("old"), "{updated}");
    assert_eq!(
        fs::read_to_string(root.join("README.md")).expect("readme"),
        readme
    );

    // A noisy run is refused unforced, and then nothing changes.
    fs::write(run.join("report.md"), report("full", "noisy")).expect("report");
    assert!(publish::publish(&run, &docs, false).is_err());
    assert_eq!(
        fs::read_to_string(docs.join(publish::SUMMARY_PAGE)).expect("page"),
        updated
    );
}

#[test]
fn only_a_quiet_full_run_is_published_unforced() {
    assert_eq!(publish::refusal(&report("full", "quiet")), None);
    assert!(publish::refusal(&report("full", "noisy")).is_some());
    assert!(publish::refusal(&report("quick", "quiet")).is_some());
}

#[test]
fn the_others_are_named_by_command_largest_first() {
    let mut before = noise::Tasks::default();
    let mut after = noise::Tasks::default();
    for (pid, name, t0, t1) in [
        (10, "rustc", 100, 300),
        (11, "rustc", 50, 90),
        (12, "cc1 plus (x)", 0, 100),
        (13, "sshd", 7, 7),
        (20, "server", 0, 150),
    ] {
        before.push(&format!("{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 {t0} 0 0 0"));
        after.push(&format!("{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 {t1} 0 0 0"));
    }
    // A process that appeared in between, and a reused pid with a new name, are not named.
    after.push("30 (make) S 1 1 1 0 -1 0 0 0 0 0 500 0 0 0");
    after.push("13 (bash) S 1 1 1 0 -1 0 0 0 0 0 90 0 0 0");
    let top = before.top(&after, &[20], 400, 3);
    assert_eq!(
        top,
        vec![
            ("rustc".to_string(), 0.6),
            ("cc1 plus (x)".to_string(), 0.25)
        ]
    );
    assert_eq!(noise::show_top(&top), "rustc 60%, cc1 plus (x) 25%");
    assert_eq!(noise::show_top(&[]), "-");
}

#[test]
fn load_busy_counts_only_the_window_where_messages_flowed() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let hz = procfs::clock_ticks() as u64;
    // Idle while connecting for 1 s, then busy a whole core for 2 s, then idle again.
    let samples = procfs::Samples {
        threads: 3,
        load_ticks: vec![
            (at(0), 0),
            (at(1000), hz / 20),
            (at(2000), hz / 20 + hz),
            (at(3000), hz / 20 + 2 * hz),
            (at(4000), hz / 20 + 2 * hz),
        ],
    };
    let busy = samples.load_busy(at(1000), at(3000));
    assert!(busy.is_some_and(|b| (b - 1.0).abs() < 1e-9), "{busy:?}");
    let whole = samples.load_busy(at(0), at(4000));
    assert!(whole.is_some_and(|b| b < 0.6), "{whole:?}");
    // Fewer than two samples, or less than 0.2 s between them: no figure.
    assert_eq!(samples.load_busy(at(1500), at(1900)), None);
}
