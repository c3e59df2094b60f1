//! Clients of the daemon: connect (or start it), `crew run`, `crew status`.

mod conn;
pub mod gather;
pub mod output;
pub mod render;
pub mod run_cmd;
pub mod status_cmd;

pub use conn::Client;
