//! The console: full-screen TUI, a client of the daemon.

pub fn run(
    _hosts: Option<std::path::PathBuf>,
    _args: crate::cli::ConsoleArgs,
) -> anyhow::Result<i32> {
    anyhow::bail!("crew console: not built yet")
}
