//! What the agent does to the system besides the bus: inotify ([`watch`]), notify
//! sockets ([`notify`]), systemd ([`systemd`]), what its own unit lets it do
//! ([`privileges`]), Unix signals to stuck workers after their checks ([`signal`]),
//! saved state on the boot clock ([`state`], [`boot`]), replacing a file whole
//! ([`atomic`]), and logs ([`logging`], [`journal`]).
pub mod atomic;
pub mod boot;
pub mod journal;
pub mod logging;
pub mod notify;
pub mod privileges;
pub mod signal;
pub mod state;
pub mod systemd;
pub mod watch;
