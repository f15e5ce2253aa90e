//! tcp-reactor's integration tests: one test binary, one module per topic. Each module's
//! own docs say what it proves; shared fixtures are the `fixtures` crate (tests/common).
//! Servers bind 127.0.0.1:0; behavioural tests run under both models (`for_each_model!`), so
//! `cargo test threads::` or `cargo test echo::reactor::` picks a model or a topic.

mod bad_input;
mod bench_logic;
mod burst_memory;
mod chat;
mod chat_flood;
mod cli;
mod contract;
mod deadlines;
mod deploy;
mod doc_links;
mod echo;
mod event_loop;
mod framing_props;
mod hostile_clients;
mod http;
mod http_conformance;
mod lifecycle;
mod limits;
mod listener_failure;
mod listeners;
mod live;
mod load;
mod memory_budget;
mod metrics;
mod outbound;
mod outbound_budget;
mod output_bound;
mod process_faults;
mod protocol_bad_input;
mod proxy;
mod proxy_memory;
mod proxy_protocol;
mod redis_py;
mod resp;
mod resp_costs;
mod resp_memory;
mod seed;
mod soak;
mod timers;
mod tls;
mod write_policy;
