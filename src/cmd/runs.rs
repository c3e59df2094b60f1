//! `crew runs`: the runs and heists the daemon holds (in flight and recent), and
//! `crew attach RUN`: follow one from its beginning, with the same output as the command that
//! started it. Several clients may follow one run at once; Ctrl-C here only stops following.

use clap::Args;

use super::heist::run::{self as heist_run, Answer, Follow};
use super::output::Mode;
use super::run::{self, OnCtrlC};
use crate::client::Client;
use crate::proto::daemon::{Event, Request, RunInfo, RunKind};

#[derive(Debug, Args, Clone)]
pub struct RunsArgs {
    /// One JSON object per run.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct AttachArgs {
    /// The run's id (`crew runs` lists them): a number for a run, `<ms>-<name>` for a heist.
    pub run: String,
    /// JSON lines, as `crew run --json` / `crew heist run --json` print them.
    #[arg(long)]
    pub json: bool,
    /// Fold hosts with identical output (runs only).
    #[arg(long, conflicts_with = "json")]
    pub gather: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn runs(args: RunsArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    runtime()?.block_on(async {
        // A daemon that starts settles what one that went away left unfinished.
        let client = Client::connect_or_spawn().await?;
        let mut rx = client.request(Request::Runs).await?;
        let list = match rx.recv().await {
            Some(Event::Runs(list)) => list,
            Some(Event::Error { message }) => anyhow::bail!("{message}"),
            other => anyhow::bail!("the daemon answered {other:?}"),
        };
        if args.json {
            for r in &list {
                println!("{}", serde_json::to_string(&info_json(r))?);
            }
        } else {
            print!("{}", table(&list));
        }
        Ok(0)
    })
}

fn info_json(r: &RunInfo) -> serde_json::Value {
    let verdicts: serde_json::Map<String, serde_json::Value> = r
        .verdicts
        .iter()
        .map(|(v, n)| (v.as_str().to_string(), (*n).into()))
        .collect();
    serde_json::json!({
        "id": r.id, "kind": r.kind, "what": r.what, "who": r.who,
        "started_ms": r.started_ms, "finished_ms": r.finished_ms, "state": r.state,
        "hosts": r.hosts, "verdicts": verdicts, "asks": r.asks,
    })
}

/// The table `crew runs` prints: newest last.
pub fn table(list: &[RunInfo]) -> String {
    if list.is_empty() {
        return "no runs\n".to_string();
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|r| {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_ms);
            let done: u32 = r.verdicts.iter().map(|(_, n)| n).sum();
            let mut counts: Vec<String> = r
                .verdicts
                .iter()
                .map(|(v, n)| format!("{n} {}", v.as_str()))
                .collect();
            if r.asks > 0 {
                counts.push(format!("{} asking", r.asks));
            }
            [
                r.id.clone(),
                match r.kind {
                    RunKind::Run => "run".into(),
                    RunKind::Heist => "heist".into(),
                },
                r.state.as_str().to_string(),
                r.who.clone(),
                humantime::format_rfc3339_seconds(when).to_string(),
                format!("{done}/{} {}", r.hosts, counts.join(", ")),
                r.what.clone(),
            ]
        })
        .collect();
    let header = ["ID", "KIND", "STATE", "WHO", "STARTED", "HOSTS", "WHAT"].map(String::from);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, w) in widths.iter().enumerate() {
            line += &format!("{:w$}  ", r[i]);
        }
        line += &super::render::sanitize(r[6].as_bytes());
        s += line.trim_end();
        s.push('\n');
    }
    s
}

pub fn attach(args: AttachArgs) -> anyhow::Result<i32> {
    crate::logging::to_file("client");
    runtime()?.block_on(async {
        let client = Client::connect_or_spawn().await?;
        let mut rx = client
            .request(Request::Attach {
                run: args.run.clone(),
            })
            .await?;
        // The first event says which kind of run it is.
        let first = match rx.recv().await {
            Some(ev) => ev,
            None => anyhow::bail!("the daemon closed the connection"),
        };
        let (tx, rest) = tokio::sync::mpsc::channel(1024);
        let is_heist = matches!(
            first,
            Event::Heist { .. } | Event::HeistOutput { .. } | Event::HeistDone { .. }
        );
        if let Event::Error { message } = &first {
            eprintln!("crew: {}", super::render::sanitize(message.as_bytes()));
            return Ok(2);
        }
        // Put the first event back in front of the rest.
        let _ = tx.send(first).await;
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        });
        if is_heist {
            let how = Follow {
                json: args.json,
                ctrl_c: OnCtrlC::Detach,
                answer_asks: Answer::OrLeave,
            };
            heist_run::follow(&client, &args.run, rest, how).await
        } else {
            let mode = Mode::of(args.json, args.gather);
            Ok(run::follow(&client, rest, mode, None, OnCtrlC::Detach).await)
        }
    })
}
