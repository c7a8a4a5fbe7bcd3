//! What the agent does to the system besides the bus: inotify, notify sockets, systemd,
//! saved state, logs, and replacing a file whole.
pub mod actions;
pub mod atomic;
pub mod boot;
pub mod journal;
pub mod logging;
pub mod notify;
pub mod privileges;
pub mod state;
pub mod systemd;
pub mod watch;
