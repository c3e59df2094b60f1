//! The client side of the daemon's protocol: connect (or start the daemon), send requests,
//! receive events; and the adapters front-ends build on it (agent facts for the host
//! picker, a heist executor that runs steps through the daemon).

mod conn;
pub mod facts;
pub mod remote;
pub mod shell;

pub use conn::{identify, operator, Client, Sender};
