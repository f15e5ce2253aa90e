//! Every direct libc call of the crate, each behind a safe function: the only `unsafe` in
//! the library besides the upgrade's `fork`/`exec`.
