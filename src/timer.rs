//! Timers. (Being written.)
