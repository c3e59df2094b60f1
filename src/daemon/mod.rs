//! `crew daemon`: agent pool, request router, run store, audit log.

pub mod link;

/// Run the daemon in this process until stopped or idle.
pub fn run_foreground(_idle: Option<std::time::Duration>) -> anyhow::Result<i32> {
    anyhow::bail!("crew daemon: not built yet")
}
