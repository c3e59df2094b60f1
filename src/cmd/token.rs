//! `crew token create NAME --scope read|run|heist|admin`, `crew token list`,
//! `crew token revoke NAME`: the API's bearer tokens, kept (hashed) under `CREW_HOME/api/`.

use clap::{Args, Subcommand};

use crate::api::token::Tokens;
use crate::api::ApiConfig;
use crate::daemon::server::Scope;

#[derive(Debug, Subcommand, Clone)]
pub enum TokenCmd {
    /// Make a token and print it (once: only its hash is kept).
    Create(CreateArgs),
    /// List tokens (names, scopes, when made; never the tokens).
    List,
    /// Revoke a token (at once: the daemon reads the store on every request).
    Revoke { name: String },
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// The token's name (in the audit log as `token:NAME`).
    pub name: String,
    /// read < run < heist < admin; each includes the ones before it.
    #[arg(long, value_parser = parse_scope)]
    pub scope: Scope,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| format!("`{s}`: read, run, heist or admin"))
}

pub fn run(cmd: TokenCmd) -> anyhow::Result<i32> {
    let store = Tokens::at(&ApiConfig::default_dir());
    match cmd {
        TokenCmd::Create(a) => {
            let secret = store.create(&a.name, a.scope)?;
            println!("{secret}");
            eprintln!(
                "crew: token `{}` (scope {}) made; it is shown this once (only its hash is kept in {})",
                a.name,
                a.scope.as_str(),
                store.path().display()
            );
            Ok(0)
        }
        TokenCmd::List => {
            let list = store.list()?;
            if list.is_empty() {
                println!("no tokens (crew token create NAME --scope read|run|heist|admin)");
            }
            for t in list {
                println!("{:<24} {:<6} {}", t.name, t.scope, t.created);
            }
            Ok(0)
        }
        TokenCmd::Revoke { name } => {
            if store.revoke(&name)? {
                println!("token `{name}` revoked");
                Ok(0)
            } else {
                eprintln!("crew: no token named `{name}`");
                Ok(1)
            }
        }
    }
}
