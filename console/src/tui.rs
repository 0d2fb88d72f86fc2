//! The TUI's terminal loop. It owns the terminal and the [`App`], and `select!`s over
//! three sources: the terminal's key events (crossterm's `EventStream`), a channel fed
//! by network tasks, and termination signals. There is no tick: the screen is redrawn
//! only after something changed the app.
//!
//! Network tasks answer over the channel and never touch the app:
//! - the status poller asks for `/v1/status` about once per heartbeat interval (between
//!   200 ms and 1 s) and, while dnsd is unreachable, retries with a doubling backoff up
//!   to 5 s, reporting every failure so the banner shows it;
//! - the event follower keeps `/v1/events/stream` open and resumes after the last event
//!   it saw; when dnsd restarted (its start time changed) it starts over;
//! - each operator action runs in its own task and reports the daemon's reply.
//!
//! A program may add keys of its own through an [`Extension`] (the demo's kill and
//! revive); the loop runs them in place, since they only start or stop local processes
//! (the screen is drawn first, so the notice "demo: revive ts1…" shows while it runs).
//!
//! When the client moves to another dnsd (a cluster client, in the demo), the poller
//! says so and the header names the new one; the event follower starts over on its log.
//!
//! The terminal is set up through ratatui's `try_init`, whose panic hook restores it
//! before a panic is printed; a guard restores it on every other way out (quit, Ctrl-C,
//! a signal, an error).

use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::{App, Effect, Extras, Input};
use crate::client::Client;
use crate::units::now_ms;

/// Longest pause between two status polls, and the shortest.
const POLL_MAX: Duration = Duration::from_secs(1);
const POLL_MIN: Duration = Duration::from_millis(200);
/// Reconnection backoff: first delay and cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The event stream is reopened after this long without an event, in case its
/// connection died silently (it resumes after the last event, so nothing repeats).
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// What a program adds to the live view: a banner line and keys of its own on the
/// selected member. The demo implements it; the view knows nothing else of the demo.
pub trait Extension {
    /// The banner and the keys, read once when the view starts.
    fn extras(&self) -> Extras;
    /// Runs extra key `key` (one of [`Extension::extras`]) on `target`, the selected
    /// member or terminal server as the key says; the text says what was done.
    fn run(&mut self, key: char, target: &str) -> anyhow::Result<String>;
}

/// Restores the terminal when the loop ends, however it ends.
struct RestoreGuard;

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The delay before reconnection attempt `attempt` (1-based).
fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(8);
    (BACKOFF_FIRST * factor).min(BACKOFF_CAP)
}

/// Runs the TUI against `client` until the operator quits or a signal arrives.
/// `extension` adds a program's banner line and keys.
pub async fn run(client: Client, mut extension: Option<&mut dyn Extension>) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let mut terminal = ratatui::try_init().context(
        "cannot set up the terminal (the live view needs one; `console status` does not)",
    )?;
    let _restore = RestoreGuard;

    let (tx, mut rx) = mpsc::channel::<Input>(256);
    let tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(poll_status(client.clone(), tx.clone())),
        tokio::spawn(follow_events(client.clone(), tx.clone())),
    ];
    let mut keys = EventStream::new();
    let mut app = App::new(client.endpoint().to_string());
    if let Some(extension) = &extension {
        app = app.with_extras(extension.extras());
    }

    let result = loop {
        app.set_now(now_ms());
        if app.take_dirty()
            && let Err(e) = terminal.draw(|frame| frame.render_widget(&app, frame.area()))
        {
            break Err(e).context("cannot draw on the terminal");
        }
        let input = tokio::select! {
            event = keys.next() => match event {
                Some(Ok(TermEvent::Key(key))) => Input::Key(key),
                Some(Ok(TermEvent::Resize(..))) => Input::Resize,
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(e).context("cannot read the terminal"),
                None => break Ok(()),
            },
            Some(input) = rx.recv() => input,
            _ = sigterm.recv() => break Ok(()),
            _ = sighup.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
        };
        app.set_now(now_ms());
        match app.update(input) {
            None => {}
            Some(Effect::Quit) => break Ok(()),
            Some(Effect::Send(request)) => {
                let client = client.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let outcome = client.act(&request).await;
                    // The loop may have ended meanwhile; nobody to tell then.
                    let _ = tx.send(Input::ActionDone { request, outcome }).await;
                });
            }
            Some(Effect::Extra { key, target }) => {
                if app.take_dirty()
                    && let Err(e) = terminal.draw(|frame| frame.render_widget(&app, frame.area()))
                {
                    break Err(e).context("cannot draw on the terminal");
                }
                let outcome = match extension.as_mut() {
                    Some(extension) => extension.run(key, &target),
                    // The app asks only for the keys an extension gave it.
                    None => Err(anyhow::anyhow!("no program handles the key {key}")),
                };
                app.update(Input::ExtraDone {
                    key,
                    target,
                    outcome,
                });
            }
        }
    };
    for task in tasks {
        task.abort();
    }
    result
}

/// Polls the status and reports it, or why dnsd could not be reached.
async fn poll_status(client: Client, tx: mpsc::Sender<Input>) {
    let mut attempt = 0u32;
    let mut endpoint = client.endpoint().to_string();
    loop {
        let result = client.status().await;
        let now = client.endpoint().to_string();
        if now != endpoint {
            endpoint = now;
            if tx.send(Input::Endpoint(endpoint.clone())).await.is_err() {
                return;
            }
        }
        let pause = match result {
            Ok(status) => {
                attempt = 0;
                let every =
                    Duration::from_millis(status.heartbeat.interval_ms).clamp(POLL_MIN, POLL_MAX);
                if tx.send(Input::Status(Box::new(status))).await.is_err() {
                    return;
                }
                every
            }
            Err(error) => {
                attempt += 1;
                let input = Input::Unreachable {
                    error: error.to_string(),
                    attempt,
                };
                if tx.send(input).await.is_err() {
                    return;
                }
                backoff(attempt)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Follows the event stream, reconnecting after the last event seen.
async fn follow_events(client: Client, tx: mpsc::Sender<Input>) {
    let mut since = 0u64;
    let mut started: Option<u64> = None;
    let mut attempt = 0u32;
    loop {
        // Which daemon is this? A restarted one numbers its events from 1 again.
        if let Ok(status) = client.status().await {
            if started.is_some_and(|s| s != status.started_ms) {
                since = 0;
                if tx.send(Input::EventsReset).await.is_err() {
                    return;
                }
            }
            started = Some(status.started_ms);
            if let Ok(mut stream) = client.stream_events(since).await {
                attempt = 0;
                while let Ok(Some(Ok(event))) =
                    tokio::time::timeout(STREAM_IDLE, stream.next()).await
                {
                    since = since.max(event.seq);
                    if tx.send(Input::Event(Box::new(event))).await.is_err() {
                        return;
                    }
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(backoff(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(4), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(4));
        assert_eq!(backoff(6), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }
}
