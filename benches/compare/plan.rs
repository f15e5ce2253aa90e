//! What a bench run does and in which order: the cells of the matrix, the settings of the
//! quick, full and smoke profiles, and the interleaved schedule.

use std::path::PathBuf;

/// One load pattern of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Client connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
}

impl Cell {
    /// `1000 conns, 64 B` (`, pipeline 16` when pipelined), for tables.
    pub fn label(&self) -> String {
        let mut s = format!("{} conns, {} B", self.connections, self.size);
        if self.pipeline > 1 {
            s.push_str(&format!(", pipeline {}", self.pipeline));
        }
        s
    }
}

/// The settings of one bench run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `quick`, `full` or `smoke`, for the report.
    pub profile: &'static str,
    /// The load patterns, in order.
    pub cells: Vec<Cell>,
    /// Rounds per cell: each server runs once per round.
    pub rounds: usize,
    /// Seconds of traffic per run.
    pub duration: f64,
    /// Times a noisy run is repeated before it is kept and marked noisy.
    pub retries: usize,
    /// Repeats allowed over the whole bench, so that a noisy machine cannot stretch it
    /// without end.
    pub rerun_budget: usize,
    /// A run is noisy when other processes and steal took more than this share of all
    /// CPU time.
    pub noise_limit: f64,
    /// A cell's load generator saturated its core when it was busy more than this share of
    /// the run.
    pub load_limit: f64,
    /// Idle connections for the memory measurement.
    pub idle: usize,
    /// Where the report goes.
    pub out: PathBuf,
}

/// Rounds per cell unless told otherwise.
pub const DEFAULT_ROUNDS: usize = 3;

/// Default noise limit: 5% of all CPU time (a tenth of a core on two cores). An idle
/// machine's daemons stay well below; one compiler job on two cores takes 50%.
pub const DEFAULT_NOISE_LIMIT: f64 = 0.05;

/// A load generator busy more than 90% of the run had no time to spare.
pub const DEFAULT_LOAD_LIMIT: f64 = 0.90;

impl Settings {
    /// The full matrix: 11 cells, 3 s of traffic each; with 7 servers (4 plaintext, 3 TLS)
    /// and 3 rounds about seventeen minutes.
    pub fn full(out: PathBuf) -> Settings {
        let mut cells = Vec::new();
        for size in [64, 4096] {
            for connections in [1, 10, 100, 1000, 5000] {
                cells.push(Cell {
                    connections,
                    size,
                    pipeline: 1,
                });
            }
        }
        cells.push(Cell {
            connections: 100,
            size: 64,
            pipeline: 16,
        });
        Settings::with_cells("full", cells, 3.0, 10_000, out)
    }

    /// A tiny matrix (three cells, two rounds of 0.4 s), under a minute.
    pub fn quick(out: PathBuf) -> Settings {
        let cells = vec![
            Cell {
                connections: 10,
                size: 64,
                pipeline: 1,
            },
            Cell {
                connections: 1000,
                size: 64,
                pipeline: 1,
            },
            Cell {
                connections: 100,
                size: 64,
                pipeline: 16,
            },
        ];
        let mut quick = Settings::with_cells("quick", cells, 0.4, 2_000, out);
        // Two rounds still give each figure a lowest and a highest.
        quick.rounds = 2;
        quick
    }

    /// The settings shared by every profile, for `cells` of `duration` seconds each.
    pub fn with_cells(
        profile: &'static str,
        cells: Vec<Cell>,
        duration: f64,
        idle: usize,
        out: PathBuf,
    ) -> Settings {
        let mut s = Settings {
            profile,
            cells,
            rounds: DEFAULT_ROUNDS,
            duration,
            retries: 2,
            rerun_budget: 0,
            noise_limit: DEFAULT_NOISE_LIMIT,
            load_limit: DEFAULT_LOAD_LIMIT,
            idle,
            out,
        };
        s.set_rounds(DEFAULT_ROUNDS, 4);
        s
    }

    /// Set the rounds, and the re-run budget to a quarter of the runs planned for
    /// `servers` servers (at least 4).
    pub fn set_rounds(&mut self, rounds: usize, servers: usize) {
        self.rounds = rounds.max(1);
        self.rerun_budget = (self.cells.len() * servers * self.rounds / 4).max(4);
    }
}

/// One run of the schedule: which round, which cell (index into the cells) and which
/// server (index into the servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Round, from 0.
    pub round: usize,
    /// Index of the cell.
    pub cell: usize,
    /// Index of the server.
    pub server: usize,
}

/// The order of the runs: rounds outermost, then cells, then servers, so the servers
/// alternate within a round (A B C D, A B C D, …) and a cell's rounds lie a whole round
/// apart. A burst of other work then hits every server of a cell alike and at most one or
/// two rounds of it, which the median over the rounds outvotes.
pub fn schedule(cells: usize, servers: usize, rounds: usize) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(cells * servers * rounds);
    for round in 0..rounds {
        for cell in 0..cells {
            for server in 0..servers {
                slots.push(Slot {
                    round,
                    cell,
                    server,
                });
            }
        }
    }
    slots
}
