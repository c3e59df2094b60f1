//! `crew agent`: reads request frames on stdin, writes response frames on stdout.

/// Serve the agent protocol on stdin/stdout until stdin closes.
pub fn run_stdio() -> anyhow::Result<i32> {
    anyhow::bail!("crew agent: not built yet")
}
