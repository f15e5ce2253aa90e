//! tcp-reactor's side-by-side benchmark as a library: `benches/compare/main.rs` (`cargo bench
//! --bench compare`) runs it, and the integration tests check its logic and smoke-run it.
//!
//! - `plan` — cells, profiles, the interleaved schedule.
//! - `servers` — the servers under comparison, one process each.
//! - `measure` — running the schedule, re-runs, idle memory.
//! - `noise` / `procfs` — the noise watch: parsing and reading `/proc`.
//! - `stats` / `summary` — medians and ranges over rounds, round-by-round ratios.
//! - `report` / `charts` — the files.
//! - `agree` — two runs compared.
//! - `publish` — a run into `docs/bench/`, with its summary.

pub mod agree;
pub mod charts;
pub mod harness;
pub mod measure;
pub mod noise;
pub mod plan;
pub mod procfs;
pub mod publish;
pub mod report;
pub mod servers;
pub mod stats;
pub mod summary;
