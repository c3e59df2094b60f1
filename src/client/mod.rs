//! Clients of the daemon: connect (or start it), `crew run`, `crew status`.

pub mod run_cmd;
pub mod status_cmd;
