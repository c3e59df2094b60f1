//! Heists: saved playbooks and the step engine.

pub mod cli;
