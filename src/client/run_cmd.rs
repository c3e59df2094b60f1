//! `crew run`.

pub fn run(_hosts: Option<std::path::PathBuf>, _args: crate::cli::RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("crew run: not built yet")
}
