//! The agent's core: pure, no I/O, time passed in.
pub mod pool;
pub mod schedule;
