//! Durations as operators write them: `30s`, `2m`, `1h30m`, or a bare number of seconds.

use std::time::Duration;

/// Parse `30s`, `2m`, `1h`, `250ms`, or plain seconds (`30`).
pub fn parse(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e} (try 30s, 2m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        let e = parse("soon").expect_err("not a duration");
        assert!(e.contains("\"soon\"") && e.contains("30s"), "{e}");
    }
}
