//! The inventory: hosts.toml, resolved against `~/.ssh/config`.

mod host;
pub mod hosts_cmd;

pub use host::{Host, Transport};
