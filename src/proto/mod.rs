//! Wire protocols. `frame` is the shared framing; `agent` is daemon↔agent, `daemon` is
//! client↔daemon. Both message sets are versioned enums checked at handshake.

pub mod agent;
pub mod bus;
pub mod daemon;
pub mod files;
pub mod frame;

/// Build identity of this executable: crate version plus a hash of the binary itself is
/// computed at run time by [`crate::paths::build_hash`]; this is the protocol version.
pub const PROTO_VERSION: u32 = 3;
