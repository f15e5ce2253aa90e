//! The tutorial's client: connect, send one message, print the reply. (Being written.)
