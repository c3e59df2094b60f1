//! The one verdict: how a host's share of a run (or of a heist) ended, decided in one place.
//!
//! What an operator means by the outcome atoms of the selection language:
//!
//! | verdict | when |
//! |---|---|
//! | `ok` | the command exited 0 |
//! | `failed` | it exited non-zero or died of a signal; or it could not be started on a reachable host; or the link broke while it ran (its fate unknown) |
//! | `timeout` | the command ran past its timeout and was killed |
//! | `unreachable` | crew could not get a command onto the host: connect refused, no route, connect or handshake timeout, host key refused, authentication failed, agent would not start |
//! | `killed` | an operator killed it (Ctrl-C, kill key, interrupted heist) |
//!
//! Every path (the daemon's run, `crew run`, the console, heists, the run store) derives the
//! verdict with [`Verdict::from_exit`] or [`Verdict::from_error`]; the error's kind travels
//! typed ([`ErrorKind`]), never as a string prefix.

use serde::{Deserialize, Serialize};

use super::job::Exit;

/// Why a host produced no exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed (refused, no route, name resolution).
    Unreachable,
    /// The connect, SSH handshake, authentication or agent start-up took too long.
    ConnectTimeout,
    /// Host key unknown, changed or revoked.
    Hostkey,
    /// Authentication failed.
    Auth,
    /// The agent could not be installed or started (and no agentless fallback worked).
    Agent,
    /// The link to the host broke while the job ran: what the command did after is unknown.
    Lost,
    /// The agent refused the job (its queue is full).
    Refused,
    /// The host could not start the command (job directory, fork, exec).
    Exec,
    /// A file could not be written or read on the host (disk full, permission, a directory
    /// in the way, a checksum mismatch): nothing was left at the target path.
    File,
    /// The command ran past its timeout and gave no exit status after the kill.
    Timeout,
    /// The job was killed on request before it exited.
    Killed,
    /// Anything else (a bug, a protocol error); the message says what.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Hostkey => "hostkey",
            ErrorKind::Auth => "auth",
            ErrorKind::Agent => "agent",
            ErrorKind::Lost => "lost",
            ErrorKind::Refused => "refused",
            ErrorKind::Exec => "exec",
            ErrorKind::File => "file",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Killed => "killed",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Why a host gave no result: the typed kind (its verdict is [`Verdict::from_error`]) and
/// the words a run reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostError {
    pub kind: ErrorKind,
    pub message: String,
}

impl HostError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// Final verdict of one host in a run or a heist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Failed,
    Timeout,
    Unreachable,
    Killed,
}

impl Verdict {
    /// Verdict of a host whose command exited; `killed` when an operator's kill was sent to it.
    pub fn from_exit(e: &Exit, killed: bool) -> Verdict {
        if e.timed_out {
            Verdict::Timeout
        } else if e.code == Some(0) {
            Verdict::Ok
        } else if killed {
            Verdict::Killed
        } else {
            Verdict::Failed
        }
    }

    /// Verdict of a host that produced no exit status.
    pub fn from_error(kind: ErrorKind) -> Verdict {
        match kind {
            ErrorKind::Unreachable
            | ErrorKind::ConnectTimeout
            | ErrorKind::Hostkey
            | ErrorKind::Auth
            | ErrorKind::Agent => Verdict::Unreachable,
            ErrorKind::Timeout => Verdict::Timeout,
            ErrorKind::Killed => Verdict::Killed,
            ErrorKind::Lost
            | ErrorKind::Refused
            | ErrorKind::Exec
            | ErrorKind::File
            | ErrorKind::Internal => Verdict::Failed,
        }
    }

    /// The selection atom's word: `ok`, `failed`, `timeout`, `unreachable`, `killed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "failed",
            Verdict::Timeout => "timeout",
            Verdict::Unreachable => "unreachable",
            Verdict::Killed => "killed",
        }
    }

    /// The verdict a selection atom names (`?failed` → `failed`).
    pub fn parse(word: &str) -> Option<Verdict> {
        Some(match word {
            "ok" => Verdict::Ok,
            "failed" => Verdict::Failed,
            "timeout" => Verdict::Timeout,
            "unreachable" => Verdict::Unreachable,
            "killed" => Verdict::Killed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, timed_out: bool) -> Exit {
        Exit {
            code,
            signal,
            wall_ms: 1,
            user_ms: 0,
            sys_ms: 0,
            max_rss_kb: 0,
            timed_out,
        }
    }

    #[test]
    fn exits() {
        assert_eq!(
            Verdict::from_exit(&exit(Some(0), None, false), false),
            Verdict::Ok
        );
        assert_eq!(
            Verdict::from_exit(&exit(Some(3), None, false), false),
            Verdict::Failed
        );
        assert_eq!(
            Verdict::from_exit(&exit(None, Some(9), false), false),
            Verdict::Failed
        );
        assert_eq!(
            Verdict::from_exit(&exit(None, Some(15), false), true),
            Verdict::Killed
        );
        assert_eq!(
            Verdict::from_exit(&exit(None, Some(9), true), false),
            Verdict::Timeout
        );
        // Exiting 0 after a kill was asked for is still a success.
        assert_eq!(
            Verdict::from_exit(&exit(Some(0), None, false), true),
            Verdict::Ok
        );
    }

    #[test]
    fn errors_that_never_got_a_command_onto_the_host_are_unreachable() {
        for k in [
            ErrorKind::Unreachable,
            ErrorKind::ConnectTimeout,
            ErrorKind::Hostkey,
            ErrorKind::Auth,
            ErrorKind::Agent,
        ] {
            assert_eq!(Verdict::from_error(k), Verdict::Unreachable, "{k:?}");
        }
        assert_eq!(Verdict::from_error(ErrorKind::Timeout), Verdict::Timeout);
        assert_eq!(Verdict::from_error(ErrorKind::Killed), Verdict::Killed);
        for k in [
            ErrorKind::Lost,
            ErrorKind::Refused,
            ErrorKind::Exec,
            ErrorKind::Internal,
        ] {
            assert_eq!(Verdict::from_error(k), Verdict::Failed, "{k:?}");
        }
    }

    #[test]
    fn words_round_trip() {
        for v in [
            Verdict::Ok,
            Verdict::Failed,
            Verdict::Timeout,
            Verdict::Unreachable,
            Verdict::Killed,
        ] {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
    }
}
