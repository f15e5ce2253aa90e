//! One client connection. (Being written.)
