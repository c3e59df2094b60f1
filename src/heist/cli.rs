//! `crew heist …`.

pub fn run(_hosts: Option<std::path::PathBuf>, _cmd: crate::cli::HeistCmd) -> anyhow::Result<i32> {
    anyhow::bail!("crew heist: not built yet")
}
