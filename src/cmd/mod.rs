//! The command-line front-ends: one module per command, each with its clap arguments, its
//! work (through the roles below) and its printing. `cli.rs` only dispatches here.

pub mod askpass;
pub mod completion;
pub mod daemon;
pub mod gather;
pub mod heist;
pub mod hostkeys;
pub mod hosts;
pub mod output;
pub mod render;
pub mod run;
pub mod runs;
pub mod shell;
pub mod status;
pub mod token;
pub mod transfer;
