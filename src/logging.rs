//! tracing to a file under `paths::log_dir()`, never to the terminal (the agent logs to
//! stderr only, since its stdout carries frames).

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Log to `<log_dir>/<role>.log`. Level from `CREW_LOG` (default `info`). Failure to open the
/// file leaves logging off rather than writing onto someone's screen.
pub fn to_file(role: &str) {
    let dir = crate::paths::log_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let Ok(file) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{role}.log")))
    else {
        return;
    };
    let filter = EnvFilter::try_from_env("CREW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}

/// Log to stderr (the agent: its stdout carries frames). Off unless `CREW_LOG` is set.
pub fn to_stderr() {
    if let Ok(filter) = EnvFilter::try_from_env("CREW_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
    }
}
