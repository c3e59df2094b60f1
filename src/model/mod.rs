//! The ground floor's shared vocabulary: what a host is, how a job ended, what a run was.
//!
//! These types travel on both wires (client ↔ daemon, daemon ↔ agent), are stored in the run
//! store and journals, and are read by every layer above; they import nothing of crew's but
//! each other, so every module may use them.

mod host;
mod job;
mod origin;
mod secret;
mod verdict;

pub use host::{Host, StrictHostKeyChecking, Transport};
pub use job::{Exit, Info, Stream};
pub use origin::RunOrigin;
pub use secret::{Secret, Sudo};
pub use verdict::{ErrorKind, HostError, Verdict};
