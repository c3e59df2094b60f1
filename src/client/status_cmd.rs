//! `crew status`, `crew daemon stop`.

pub fn run() -> anyhow::Result<i32> {
    anyhow::bail!("crew status: not built yet")
}

pub fn stop() -> anyhow::Result<i32> {
    anyhow::bail!("crew daemon stop: not built yet")
}
