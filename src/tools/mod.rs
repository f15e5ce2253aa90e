//! The tools the binary offers besides `serve`: the tutorial's [`client`] and the [`load`]
//! generator. Both are library modules, so the tests and the benchmark drive them directly.

pub mod client;
pub mod load;
