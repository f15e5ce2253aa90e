//! Fixtures shared by the integration tests.

// Each test binary uses a different subset of the fixtures.
#![allow(dead_code)]

pub mod faults;
