//! The terminal and the event loop. The guard restores the terminal on exit, on panic (a
//! panic hook) and on SIGTERM/SIGHUP. One `tokio::select!` waits on terminal input, actions
//! from background tasks and a tick; everything pending is drained, then one frame is drawn,
//! at most every [`FRAME`].

use std::io::{stdout, Stdout};
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use futures::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::action::Action;
use super::app::Model;
use super::effect::{Effect, Executor};
use super::keymap::{Key, KeyCode};
use super::theme::Theme;
use super::ui;

/// Minimum time between two frames (~60 fps).
pub const FRAME: Duration = Duration::from_millis(16);
const TICK: Duration = Duration::from_millis(250);
/// Most actions applied before the next frame is drawn (keeps input responsive under floods).
const MAX_DRAIN: usize = 20_000;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Puts the terminal in raw mode on the alternate screen; restores it when dropped.
pub struct TerminalGuard {
    pub terminal: Term,
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, cursor::Show);
}

impl TerminalGuard {
    /// Take the terminal back after something else had it (a shell).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        terminal::enable_raw_mode()?;
        execute!(stdout(), EnterAlternateScreen, cursor::Hide)?;
        self.terminal.clear()?;
        Ok(())
    }

    pub fn enter() -> anyhow::Result<TerminalGuard> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        terminal::enable_raw_mode()?;
        execute!(stdout(), EnterAlternateScreen, cursor::Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// crossterm key → keymap key (None for releases and keys the console does not use).
pub fn key_from(ev: KeyEvent) -> Option<Key> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    use crossterm::event::KeyCode as C;
    let code = match ev.code {
        C::Char(c) => KeyCode::Char(c),
        C::Enter => KeyCode::Enter,
        C::Esc => KeyCode::Esc,
        C::Tab => KeyCode::Tab,
        C::BackTab => KeyCode::BackTab,
        C::Backspace => KeyCode::Backspace,
        C::Delete => KeyCode::Delete,
        C::Up => KeyCode::Up,
        C::Down => KeyCode::Down,
        C::Left => KeyCode::Left,
        C::Right => KeyCode::Right,
        C::Home => KeyCode::Home,
        C::End => KeyCode::End,
        C::PageUp => KeyCode::PageUp,
        C::PageDown => KeyCode::PageDown,
        C::F(n) => KeyCode::F(n),
        C::Null => KeyCode::Char(' '),
        _ => return None,
    };
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL) || ev.code == C::Null;
    Some(Key {
        code,
        ctrl,
        alt: ev.modifiers.contains(KeyModifiers::ALT),
    })
}

/// Run the console until the operator quits or a terminating signal arrives.
pub async fn run(
    mut model: Model,
    theme: Theme,
    exec: Executor,
    mut rx: mpsc::UnboundedReceiver<Action>,
) -> anyhow::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let start = Instant::now();
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            guard.terminal.draw(|f| ui::draw(f, &model, &theme))?;
            last_draw = Instant::now();
            dirty = false;
        }
        if model.quit {
            break;
        }
        let next_frame = tokio::time::Instant::from_std(last_draw + FRAME);
        let mut effects = Vec::new();
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => {
                    if let Some(key) = key_from(k) {
                        effects.extend(model.key(key));
                    }
                }
                Some(Ok(TermEvent::Resize(w, h))) => effects.extend(model.update(Action::Resize(w, h))),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::error!("terminal input: {e}");
                    break;
                }
                None => break,
            },
            Some(action) = rx.recv() => effects.extend(model.update(action)),
            _ = tick.tick() => {
                let ms = start.elapsed().as_millis() as u64;
                effects.extend(model.update(Action::Tick(ms)));
            }
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            _ = tokio::time::sleep_until(next_frame), if dirty => {}
        }
        // Drain whatever else is pending before drawing once.
        for _ in 0..MAX_DRAIN {
            match rx.try_recv() {
                Ok(action) => effects.extend(model.update(action)),
                Err(_) => break,
            }
        }
        // The Model's clock advances after every batch (durations, the diff's pacing).
        effects.extend(model.update(Action::Tick(start.elapsed().as_millis() as u64)));
        for e in effects {
            match e {
                Effect::Shell(host) => {
                    // The shell owns the terminal until it exits: stop reading keys, give the
                    // screen back, run it, then take the screen again and redraw. Runs go on
                    // meanwhile; their events wait in `rx`.
                    drop(events);
                    restore();
                    let accept = model.settings.accept_new_host_keys;
                    let name = host.name.clone();
                    let result = shell(host, accept).await;
                    guard.resume()?;
                    events = EventStream::new();
                    model.update(Action::ShellEnded { host: name, result });
                }
                e => exec.execute(e),
            }
        }
        dirty = true;
    }
    drop(guard);
    Ok(())
}

/// An interactive session on `host` through the daemon, on the real terminal.
async fn shell(host: crate::model::Host, accept: bool) -> Result<i32, String> {
    use std::io::Write as _;
    let name = host.name.clone();
    println!("crew: shell on {name} (exit it to return to the console)\r");
    let client = crate::client::Client::connect_or_spawn()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let r = crate::client::shell::interactive(&client, host, None, accept)
        .await
        .map_err(|e| format!("{e:#}"));
    let _ = std::io::stdout().flush();
    r
}
