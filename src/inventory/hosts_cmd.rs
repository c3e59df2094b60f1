//! `crew hosts [SELECTION]`.

pub fn run(
    _hosts: Option<std::path::PathBuf>,
    _args: crate::cli::HostsArgs,
) -> anyhow::Result<i32> {
    anyhow::bail!("crew hosts: not built yet")
}
