//! The `tcp-reactor` command line. (Being written.)

fn main() {}
