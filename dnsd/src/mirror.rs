//! Carries out the controller's mirroring passes and hooks.
//!
//! SSH (ssh2) and rsync are blocking, so each pass or hook runs on tokio's blocking
//! pool and reports back to the driver over a channel; a semaphore bounds how many
//! passes run at once (`[mirror] concurrency`). Nothing here decides anything: the
//! controller ordered the work and judges the result.
//!
//! A pass from A to B:
//! 1. the terminal server opens (or reuses) its own session to B, which verifies B's
//!    host key against `[mirror] known_hosts`: a member whose key is unknown or changed
//!    is refused, with the key's fingerprint, and nothing is synced to it;
//! 2. it opens a session to A and runs rsync there, once per service path, pushing to
//!    B with every argument quoted;
//! 3. when the controller asks to keep what B alone had, rsync runs with `--backup
//!    --backup-dir=<path>.dnsd-kept/epoch-<N>`, and the files that folder gained are
//!    counted on B (`find`) and reported; what an interrupted pass left in its staging
//!    folder is renamed `...-interrupted` and reported by the next pass to B;
//! 4. a pass whose epoch the service has left (a change of primary committed while it
//!    waited for its sessions or guards) stops before rsync.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsync_sync::config::MirrorSettings;
use rsync_sync::connector::{Backoff, ConnectError, Connector};
use rsync_sync::rsync::{Progress, rooted, run_pass};
use rsync_sync::ssh::Session;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::config::{Config, HOOK_PLACEHOLDERS, NodeConfig};
use crate::controller::{
    Ended, Hook, HookError, HookId, HookOrder, Keep, Kept, LocalEnd, NodeId, PassError, PassId,
    PassSummary, SourceClock, SyncOrder,
};

/// Progress updates of one pass are sent at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What the executor tells the driver.
#[derive(Debug)]
pub enum Report {
    /// A pass ended.
    Pass {
        id: PassId,
        outcome: Result<PassSummary, PassError>,
    },
    /// A hook ended.
    Hook {
        id: HookId,
        outcome: Result<(), HookError>,
    },
    /// A pass is under way.
    Progress { id: PassId, progress: PassProgress },
}

/// Where a running pass is, from rsync's `--info=progress2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassProgress {
    pub bytes: u64,
    pub percent: u8,
    pub rate_bytes_per_sec: f64,
    pub eta_secs: Option<u64>,
    /// Which of the service's paths (0-based) and how many there are.
    pub path: usize,
    pub paths: usize,
}

/// Runs passes and hooks for the driver. Every task it starts is tracked, so that the
/// daemon can wait for them at shutdown ([`Executor::shutdown`]).
#[derive(Clone)]
pub struct Executor {
    config: Arc<Config>,
    epochs: Epochs,
    /// Present when the configuration has a `[mirror]` section.
    connector: Option<Arc<Connector>>,
    passes: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
    tasks: TaskTracker,
}

impl Executor {
    pub fn new(config: Arc<Config>, reports: mpsc::Sender<Report>) -> Executor {
        let (connector, concurrency) = match &config.mirror {
            Some(m) => (
                Some(Arc::new(Connector::new(m.ssh.clone(), Backoff::default()))),
                m.concurrency,
            ),
            None => (None, 1),
        };
        Executor {
            config,
            epochs: Epochs::default(),
            connector,
            passes: Arc::new(Semaphore::new(concurrency.max(1))),
            reports,
            tasks: TaskTracker::new(),
        }
    }

    /// An executor for a new configuration (a reload): passes and hooks ordered from now
    /// on use it, those under way end with the one they started with. Reports and the
    /// work under way are shared; so are the SSH sessions and the pass slots while
    /// `[mirror]` is unchanged (a new `concurrency` counts only passes started after it).
    pub fn reconfigured(&self, config: Arc<Config>) -> Executor {
        let same_mirror = self.config.mirror == config.mirror;
        let mut next = Executor::new(config, self.reports.clone());
        next.tasks = self.tasks.clone();
        next.epochs = self.epochs.clone();
        if same_mirror {
            next.connector = self.connector.clone();
            next.passes = self.passes.clone();
        }
        next
    }

    /// Each service's current epoch, which the driver keeps up to date and every pass
    /// checks just before rsync starts.
    pub fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    /// Starts no more work, and waits up to `grace` for the passes and hooks under way.
    /// Returns how many were still running when the wait ended (blocking SSH work cannot
    /// be interrupted; it ends with the process).
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.passes.close();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            return self.tasks.len();
        }
        0
    }

    /// Starts a pass; its report arrives on the channel.
    pub fn start_pass(&self, order: SyncOrder) {
        let this = self.clone();
        let span = self.span("pass", order.service, order.to);
        self.tasks.spawn(
            async move {
                let id = order.id;
                let outcome = match this.passes.clone().acquire_owned().await {
                    Ok(permit) => {
                        let worker = this.clone();
                        let span = tracing::Span::current();
                        let joined = tokio::task::spawn_blocking(move || {
                            let _permit = permit;
                            let _entered = span.enter();
                            worker.pass(&order)
                        })
                        .await;
                        joined.unwrap_or_else(|e| Err(PassError::Task(e)))
                    }
                    Err(_) => Err(PassError::ShuttingDown),
                };
                // The driver may be gone at shutdown; nothing to report to then.
                let _ = this.reports.send(Report::Pass { id, outcome }).await;
            }
            .instrument(span),
        );
    }

    /// Starts a hook; its report arrives on the channel.
    pub fn run_hook(&self, order: HookOrder) {
        let this = self.clone();
        let span = self.span("hook", order.service, order.node);
        self.tasks.spawn(
            async move {
                let id = order.id;
                let worker = this.clone();
                let span = tracing::Span::current();
                let outcome = tokio::task::spawn_blocking(move || {
                    let _entered = span.enter();
                    worker.hook(&order)
                })
                .await
                .unwrap_or_else(|e| Err(HookError::Task(e)));
                let _ = this.reports.send(Report::Hook { id, outcome }).await;
            }
            .instrument(span),
        );
    }

    /// A span naming the service and the node a pass or hook concerns.
    fn span(
        &self,
        what: &'static str,
        service: crate::controller::ServiceId,
        node: NodeId,
    ) -> tracing::Span {
        info_span!("work", what, service = %self.config.service(service).name, node = %self.config.node(node).name)
    }

    fn mirror(&self) -> Option<(&MirrorSettings, &Connector)> {
        match (&self.config.mirror, &self.connector) {
            (Some(m), Some(c)) => Some((m, c)),
            _ => None,
        }
    }

    /// Runs `work` on the cached session to `node`; if the session itself fails (its
    /// member restarted sshd since it was opened, say), drops it and tries once more on a
    /// fresh one. `work` tells session failures from others by returning `Err((true, _))`.
    fn with_session<T, E>(
        connector: &Connector,
        node: &NodeConfig,
        session_error: impl Fn(ConnectError) -> E,
        mut work: impl FnMut(&Session) -> Result<T, (bool, E)>,
    ) -> Result<T, E> {
        let address = node.address.to_string();
        let session = connector.get(&address).map_err(&session_error)?;
        match work(&session) {
            Err((true, _)) => {
                connector.reset(&address);
                debug!(node = %node.name, "session failed; retrying on a new one");
                let session = connector.get(&address).map_err(&session_error)?;
                work(&session).map_err(|(_, e)| e)
            }
            other => other.map_err(|(_, e)| e),
        }
    }

    /// One pass, blocking. Every path of the service, in order; the first failure ends it.
    fn pass(&self, order: &SyncOrder) -> Result<PassSummary, PassError> {
        let started = Instant::now();
        let (mirror, connector) = self.mirror().ok_or(PassError::NoMirror)?;
        let service = self.config.service(order.service);
        let from = self.config.node(order.from);
        let to = self.config.node(order.to);
        let connect_error = |node: &NodeConfig| {
            let (name, address) = (node.name.clone(), node.address);
            move |source| PassError::Connect {
                node: name.clone(),
                address,
                source: Box::new(source),
            }
        };
        // The terminal server checks the destination's host key itself, afresh for every
        // pass: a member whose key is unknown or changed gets nothing.
        let to_addr = to.address.to_string();
        rsync_sync::ssh::verify_host_key(&to_addr, &mirror.ssh).map_err(|source| {
            PassError::HostKey {
                node: to.name.clone(),
                address: to.address,
                source: Box::new(source),
            }
        })?;
        let dest = connector.get(&to_addr).map_err(connect_error(to))?;
        let source = connector
            .get(&from.address.to_string())
            .map_err(connect_error(from))?;
        // The pass carries its epoch: a member that knows a newer one refuses it. The
        // destination, the side that must refuse, is asked last, closest to rsync.
        if let Some(guard) = &service.hooks.epoch_guard {
            for (node, session) in [(from, &source), (to, &dest)] {
                let argv = hook_argv(guard, &service.name, node, order.epoch);
                remote(session, &argv, "epoch guard", &node.name)?;
            }
        }
        // What the source's clock says as the pass starts: files it changes after this
        // are not in this copy.
        let source_clock = remote(
            &source,
            &["date", "+%s.%N"],
            "reading the clock",
            &from.name,
        )
        .ok()
        .and_then(|out| SourceClock::parse(&out));
        let mut summary = PassSummary {
            source_clock,
            ..PassSummary::default()
        };
        let paths = service.paths.len();
        for (k, path) in service.paths.iter().enumerate() {
            let src_dir = rooted(from.root.as_deref(), path);
            let dest_dir = rooted(to.root.as_deref(), path);
            // What an interrupted pass set aside (dnsd, or its leader, died before the
            // sort) is reported now, before anything else lands beside it.
            let left = leftovers(&dest, &dest_dir, &to.name).map_err(|e| with_kept(e, &summary))?;
            if left.files > 0 {
                add_kept(&mut summary, left);
            }
            let mut spec = mirror.pass(src_dir, &to_addr, dest_dir.clone());
            let sorting = order.keep.as_ref().map(|keep| {
                let (staging, kept) = keep_dirs(&dest_dir, order.epoch, order.number);
                spec.backup_dir = Some(staging.clone());
                (keep, staging, kept)
            });
            let mut last_sent = Instant::now() - PROGRESS_EVERY;
            let mut on_progress = |p: &Progress| {
                if last_sent.elapsed() >= PROGRESS_EVERY {
                    last_sent = Instant::now();
                    let progress = PassProgress {
                        bytes: p.bytes,
                        percent: p.percent,
                        rate_bytes_per_sec: p.rate_bytes_per_sec,
                        eta_secs: p.eta.map(|d| d.as_secs()),
                        path: k,
                        paths,
                    };
                    // A full channel only drops a progress update.
                    let _ = self.reports.try_send(Report::Progress {
                        id: order.id,
                        progress,
                    });
                }
            };
            // The guards and the sessions may have taken seconds (a member cut off): a pass
            // the primary's change overtook in the meantime must not start.
            self.epochs
                .check(&service.name, order.epoch)
                .map_err(|e| with_kept(e, &summary))?;
            let outcome = Self::with_session(connector, from, connect_error(from), |source| {
                run_pass(source, &spec, &mut on_progress).map_err(|e| {
                    let session_failed = matches!(e, rsync_sync::rsync::PassError::Ssh { .. });
                    let error = PassError::Rsync {
                        from: from.name.clone(),
                        to: to.name.clone(),
                        kept: None,
                        source: Box::new(e),
                    };
                    (session_failed, error)
                })
            });
            // What rsync set aside is sorted even when it failed half-way: the files it
            // overwrote before failing may hold writes the primary lacks.
            let sorted = match &sorting {
                Some((keep, staging, kept)) => Some(
                    sort_aside(&dest, keep, staging, kept, &to.name)
                        .map_err(|e| unsorted(e, &to.name, summary.kept.as_ref(), staging))?,
                ),
                None => None,
            };
            if let Some(sorted) = sorted {
                add_kept(&mut summary, sorted);
            }
            let stats = outcome.map_err(|e| match e {
                PassError::Rsync {
                    from, to, source, ..
                } => PassError::Rsync {
                    from,
                    to,
                    kept: summary
                        .kept
                        .as_ref()
                        .filter(|k| k.files > 0)
                        .map(|k| k.dir.clone()),
                    source,
                },
                other => with_kept(other, &summary),
            })?;
            summary.files_transferred += stats.files_transferred;
            summary.literal_bytes += stats.literal_bytes;
            summary.matched_bytes += stats.matched_bytes;
            summary.bytes_sent += stats.bytes_sent;
            summary.bytes_received += stats.bytes_received;
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        debug!(
            files = summary.files_transferred,
            literal = summary.literal_bytes,
            matched = summary.matched_bytes,
            "pass done"
        );
        Ok(summary)
    }

    /// One hook, blocking, bounded by the service's `hook_timeout`.
    fn hook(&self, order: &HookOrder) -> Result<(), HookError> {
        let service = self.config.service(order.service);
        let node = self.config.node(order.node);
        let argv = match order.hook {
            Hook::Promote => service.hooks.promote.as_ref(),
            Hook::Demote => service.hooks.demote.as_ref(),
            Hook::Fence => service.hooks.fence.as_ref(),
            Hook::Restart => service.hooks.restart.as_ref(),
        }
        .ok_or(HookError::NotConfigured(order.hook))?;
        let values = [
            service.name.clone(),
            node.name.clone(),
            node.address.to_string(),
            order.epoch.to_string(),
        ];
        let argv: Vec<String> = argv.iter().map(|a| substitute(a, &values)).collect();
        let timeout = service.hook_timeout;
        info!(hook = %order.hook, epoch = order.epoch, ?argv, "running hook");
        if order.hook == Hook::Fence {
            return run_local(&argv, &values, timeout);
        }
        let (_, connector) = self.mirror().ok_or(HookError::NoMirror)?;
        // timeout(1) on the member bounds the command; KILL 5 s after TERM.
        let secs = timeout.as_secs().max(1).to_string();
        let mut wrapped = vec!["timeout".to_owned(), "--kill-after=5".to_owned(), secs];
        wrapped.extend(argv);
        let connect_error = |source| HookError::Connect {
            node: node.name.clone(),
            address: node.address,
            source: Box::new(source),
        };
        let ssh_error = |source| HookError::Ssh {
            node: node.name.clone(),
            address: node.address,
            source: Box::new(source),
        };
        // Retried on a fresh session only if the command certainly did not start.
        let out = Self::with_session(connector, node, connect_error, |session| {
            session
                .exec(&wrapped)
                .map_err(|e| (e.before_command(), ssh_error(e)))
        })?;
        command_outcome(&node.name, &out, timeout)
    }
}

/// Each service's current epoch (by name, which a reload keeps), shared by the driver,
/// which sets it after every step of the controller, and the passes, which check it.
#[derive(Debug, Clone, Default)]
pub struct Epochs(Arc<std::sync::RwLock<std::collections::HashMap<String, u64>>>);

impl Epochs {
    /// Records `epoch` as service `name`'s current one.
    pub fn set(&self, name: &str, epoch: u64) {
        // A poisoned lock only means a writer panicked mid-insert: the map is still whole.
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if map.get(name) != Some(&epoch) {
            map.insert(name.to_owned(), epoch);
        }
    }

    /// Whether a pass of `epoch` for service `name` may still start.
    pub fn check(&self, name: &str, epoch: u64) -> Result<(), PassError> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some(&current) if current > epoch => Err(PassError::Superseded { epoch, current }),
            _ => Ok(()),
        }
    }
}

/// How a command run on `node` under `timeout(1)` ended: done, or failed with its exit
/// status (124: it timed out after `timeout`) and the last line it printed.
pub(crate) fn command_outcome(
    node: &str,
    out: &rsync_sync::ssh::Output,
    timeout: Duration,
) -> Result<(), HookError> {
    if out.status.success() {
        return Ok(());
    }
    let ended = match out.status.code() {
        Some(124) => Ended::TimedOut(timeout),
        _ => Ended::Status(out.status.to_string()),
    };
    Err(HookError::Failed {
        node: node.to_owned(),
        ended,
        detail: last_line(&out.stderr).or_else(|| last_line(&out.stdout)),
    })
}

/// Where a pass that sorts what it overwrites puts it under `dest_dir`: first aside into
/// a staging folder (rsync's `--backup-dir`), then what holds writes the primary lacks
/// into a folder of this pass's own, never reused: `<dest>.dnsd-kept/epoch-4-pass-17`.
pub fn keep_dirs(dest_dir: &Path, epoch: u64, number: u64) -> (PathBuf, PathBuf) {
    let base = format!("{}.dnsd-kept", dest_dir.display());
    (
        PathBuf::from(format!("{base}/.staging-epoch-{epoch}-pass-{number}")),
        PathBuf::from(format!("{base}/epoch-{epoch}-pass-{number}")),
    )
}

/// Sorts what a pass set aside in `staging` on the member: files `keep` says hold writes
/// the primary lacks go to `kept` (created only if there is any), the stale rest are
/// deleted and counted. One `find` per class; every value is a positional argument of a
/// fixed script, never part of it.
const SORT_ASIDE: &str = r#"set -eu
staging=$1 rule=$2 kept=$3
[ -d "$staging" ] || exit 0
case $rule in
  everything) ;;
  nothing) find "$staging" -type f -printf 'replaced %s\n' -delete ;;
  *) find "$staging" -type f ! -newermt "$rule" -printf 'replaced %s\n' -delete ;;
esac
find "$staging" -mindepth 1 -depth -type d -empty -delete
find "$staging" -type f -printf 'kept %s\n'
if [ -n "$(find "$staging" -type f -print -quit)" ]; then
  mv "$staging" "$kept"
else
  rm -rf "$staging"
fi
"#;

fn sort_aside(
    session: &Session,
    keep: &Keep,
    staging: &Path,
    kept: &Path,
    node: &str,
) -> Result<Kept, PassError> {
    let rule = match keep {
        Keep::Nothing => "nothing".to_owned(),
        Keep::Everything => "everything".to_owned(),
        Keep::NewerThan(clock) => clock.to_string(),
    };
    let (staging, kept) = (staging.display().to_string(), kept.display().to_string());
    let out = remote(
        session,
        &["sh", "-c", SORT_ASIDE, "sh", &staging, &rule, &kept],
        "sorting what the pass set aside",
        node,
    )?;
    let mut sorted = read_listing(&out);
    if sorted.files > 0 {
        sorted.dir = kept;
    }
    Ok(sorted)
}

/// A pass that fails after it kept files (an earlier path's, what an interrupted pass
/// left, or this path's own before the failure) says where they are.
fn with_kept(error: PassError, summary: &PassSummary) -> PassError {
    match summary.kept.as_ref().filter(|k| k.files > 0) {
        Some(k) if !matches!(error, PassError::Rsync { .. } | PassError::Unsorted { .. }) => {
            PassError::KeptThenFailed {
                kept: k.dir.clone(),
                source: Box::new(error),
            }
        }
        _ => error,
    }
}

/// Adds what one path kept to the pass's total.
fn add_kept(summary: &mut PassSummary, more: Kept) {
    let total = summary.kept.get_or_insert(Kept {
        files: 0,
        bytes: 0,
        dir: String::new(),
        replaced: 0,
    });
    total.files += more.files;
    total.bytes += more.bytes;
    total.replaced += more.replaced;
    if !more.dir.is_empty() {
        if !total.dir.is_empty() {
            total.dir.push_str(", ");
        }
        total.dir.push_str(&more.dir);
    }
}

/// Staging folders an interrupted pass left under `$1` (a member's `<path>.dnsd-kept`):
/// each holding files is renamed `<name>-interrupted` (no longer a staging folder, so
/// reported once) and listed with its files' sizes; empty ones are removed.
const LEFTOVERS: &str = r#"set -eu
base=$1
[ -d "$base" ] || exit 0
for staging in "$base"/.staging-*; do
  [ -d "$staging" ] || continue
  if [ -n "$(find "$staging" -type f -print -quit)" ]; then
    name=${staging##*/.staging-}
    kept="$base/$name-interrupted"
    mv "$staging" "$kept"
    echo "dir $kept"
    find "$kept" -type f -printf 'kept %s
'
  else
    rm -rf "$staging"
  fi
done
"#;

/// What interrupted passes left aside under `dest_dir` on the destination, now kept.
fn leftovers(session: &Session, dest_dir: &Path, node: &str) -> Result<Kept, PassError> {
    let base = format!("{}.dnsd-kept", dest_dir.display());
    let out = remote(
        session,
        &["sh", "-c", LEFTOVERS, "sh", &base],
        "looking for what interrupted passes set aside",
        node,
    )?;
    Ok(read_listing(&out))
}

/// What the sorting scripts print, added up: `dir PATH` (a folder now holding kept
/// files), `kept SIZE` (a file kept), `replaced SIZE` (a stale file deleted).
fn read_listing(out: &str) -> Kept {
    let mut listed = Kept {
        files: 0,
        bytes: 0,
        dir: String::new(),
        replaced: 0,
    };
    for line in out.lines() {
        match line.split_once(' ') {
            Some(("dir", dir)) => {
                if !listed.dir.is_empty() {
                    listed.dir.push_str(", ");
                }
                listed.dir.push_str(dir);
            }
            Some(("kept", size)) => {
                listed.files += 1;
                listed.bytes += size.trim().parse::<u64>().unwrap_or(0);
            }
            Some(("replaced", _)) => listed.replaced += 1,
            _ => {}
        }
    }
    listed
}

/// A sort that failed leaves the staging folder on the member with everything the pass
/// overwrote in it: the error names it, beside what earlier paths of the pass kept.
fn unsorted(error: PassError, node: &str, earlier: Option<&Kept>, staging: &Path) -> PassError {
    let mut kept = earlier
        .map(|k| k.dir.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_default();
    if !kept.is_empty() {
        kept.push_str(", ");
    }
    kept.push_str(&staging.display().to_string());
    PassError::Unsorted {
        node: node.to_owned(),
        kept,
        source: Box::new(error),
    }
}

/// Runs a command on a member for a pass; its stdout, or why it failed.
fn remote<S: AsRef<str>>(
    session: &Session,
    argv: &[S],
    what: &'static str,
    node: &str,
) -> Result<String, PassError> {
    let out = session.exec(argv).map_err(|source| PassError::Remote {
        what,
        node: node.to_owned(),
        source: Box::new(source),
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(PassError::RemoteFailed {
        what,
        node: node.to_owned(),
        detail: last_line(&out.stderr)
            .or_else(|| last_line(&out.stdout))
            .unwrap_or_else(|| out.status.to_string()),
    })
}

/// A hook's argv with its placeholders replaced for `node` and `epoch`.
fn hook_argv(argv: &[String], service: &str, node: &NodeConfig, epoch: u64) -> Vec<String> {
    let values = [
        service.to_owned(),
        node.name.clone(),
        node.address.to_string(),
        epoch.to_string(),
    ];
    argv.iter().map(|a| substitute(a, &values)).collect()
}

/// Replaces `{service}`, `{node}`, `{address}` and `{epoch}` in one argument.
fn substitute(arg: &str, values: &[String; 4]) -> String {
    let mut out = arg.to_owned();
    for (placeholder, value) in HOOK_PLACEHOLDERS.iter().zip(values) {
        out = out.replace(placeholder, value);
    }
    out
}

/// The last line of `text` that is not blank, trimmed: what a failing command said last.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// How much of a local command's output is kept (the end of it) for its error message.
const OUTPUT_TAIL: usize = 64 * 1024;

/// Runs a fence command on the terminal server, no shell, with the service, node,
/// address and epoch also in the environment. Its output is read while it runs (a
/// chatty command never blocks on a full pipe), and after `timeout` its whole process
/// group is killed, children it started included.
fn run_local(argv: &[String], values: &[String; 4], timeout: Duration) -> Result<(), HookError> {
    use std::os::unix::process::CommandExt as _;
    let Some((program, args)) = argv.split_first() else {
        return Err(HookError::NotConfigured(Hook::Fence));
    };
    let local = |action, source| HookError::Local {
        action,
        program: program.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .env("DNSD_SERVICE", &values[0])
        .env("DNSD_NODE", &values[1])
        .env("DNSD_ADDRESS", &values[2])
        .env("DNSD_EPOCH", &values[3])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout reaches everything it started.
        .process_group(0)
        .spawn()
        .map_err(|e| local("run", e))?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // The group's id is the child's pid (process_group(0) above).
                let group = child.id() as libc::pid_t;
                // SAFETY: killpg only sends a signal to the process group we created.
                if unsafe { libc::killpg(group, libc::SIGKILL) } != 0 {
                    let e = std::io::Error::last_os_error();
                    warn!(%program, error = %e, "cannot kill a fence command that timed out");
                }
                let _ = child.wait();
                break Err(LocalEnd::TimedOut(timeout));
            }
            Err(e) => {
                break Err(LocalEnd::Exited(match child.wait() {
                    Ok(status) => status,
                    Err(_) => return Err(local("wait for", e)),
                }));
            }
        }
    };
    // The readers end once every process holding the pipes has ended.
    let text = |reader: Option<std::thread::JoinHandle<String>>| {
        reader.and_then(|r| r.join().ok()).unwrap_or_default()
    };
    let (out, err) = (text(stdout), text(stderr));
    let ended = match ended {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => LocalEnd::Exited(status),
        Err(why) => why,
    };
    Err(HookError::LocalFailed {
        program: program.clone(),
        ended,
        detail: last_line(&err).or_else(|| last_line(&out)),
    })
}

/// Reads a pipe to its end on a thread of its own, keeping the last [`OUTPUT_TAIL`] bytes.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut tail: VecDeque<u8> = VecDeque::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend(&buf[..n]);
            let excess = tail.len().saturating_sub(OUTPUT_TAIL);
            tail.drain(..excess);
        }
        String::from_utf8_lossy(tail.make_contiguous()).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_inside_arguments() {
        let values = [
            "www".to_owned(),
            "app2".to_owned(),
            "10.0.0.12".to_owned(),
            "7".to_owned(),
        ];
        assert_eq!(
            substitute("--node={node}@{address}", &values),
            "--node=app2@10.0.0.12"
        );
        assert_eq!(substitute("{service}-{epoch}", &values), "www-7");
        assert_eq!(substitute("plain", &values), "plain");
    }

    #[test]
    fn what_an_interrupted_pass_set_aside_is_renamed_and_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("data.dnsd-kept");
        let run = || {
            let out = Command::new("sh")
                .args(["-c", LEFTOVERS, "sh"])
                .arg(&base)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run(), "", "no kept folder yet");
        let left = base.join(".staging-epoch-3-pass-9/w");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::write(left.join("196"), "x".repeat(59)).unwrap();
        std::fs::create_dir_all(base.join(".staging-epoch-3-pass-8/empty")).unwrap();
        std::fs::create_dir_all(base.join("epoch-2-pass-4")).unwrap();
        let kept = base.join("epoch-3-pass-9-interrupted");
        let out = run();
        assert_eq!(out, format!("dir {}\nkept 59\n", kept.display()));
        assert_eq!(
            read_listing(&out),
            Kept {
                files: 1,
                bytes: 59,
                dir: kept.display().to_string(),
                replaced: 0
            }
        );
        assert!(kept.join("w/196").is_file());
        assert!(
            !base.join(".staging-epoch-3-pass-8").exists(),
            "empty: removed"
        );
        assert!(base.join("epoch-2-pass-4").is_dir(), "sorted folders stay");
        assert_eq!(run(), "", "reported once");
    }

    #[test]
    fn a_pass_that_fails_after_keeping_files_says_where_they_are() {
        let refused = || PassError::RemoteFailed {
            what: "reading the clock",
            node: "app3".into(),
            detail: "connection refused".into(),
        };
        let mut summary = PassSummary::default();
        assert_eq!(
            with_kept(refused(), &summary).to_string(),
            refused().to_string()
        );
        add_kept(
            &mut summary,
            Kept {
                files: 2,
                bytes: 118,
                dir: "/srv/data.dnsd-kept/epoch-24-pass-91".into(),
                replaced: 0,
            },
        );
        assert_eq!(
            crate::controller::describe(&with_kept(refused(), &summary)),
            "reading the clock on app3 failed: connection refused (what the pass overwrote \
             with writes the primary lacks is kept in /srv/data.dnsd-kept/epoch-24-pass-91)"
        );
    }

    #[test]
    fn a_pass_of_an_older_epoch_does_not_start() {
        let epochs = Epochs::default();
        assert!(epochs.check("www", 5).is_ok(), "nothing known yet");
        epochs.set("www", 5);
        assert!(epochs.check("www", 5).is_ok());
        assert!(epochs.check("www", 6).is_ok());
        assert!(epochs.check("db", 1).is_ok(), "another service");
        epochs.set("www", 7);
        assert_eq!(
            epochs.check("www", 5).unwrap_err().to_string(),
            "not started: ordered in epoch 5, and the service is at epoch 7 now"
        );
    }

    #[test]
    fn kept_folder_is_beside_the_data_and_named_for_the_epoch_and_pass() {
        assert_eq!(
            keep_dirs(Path::new("/srv/data"), 4, 17),
            (
                PathBuf::from("/srv/data.dnsd-kept/.staging-epoch-4-pass-17"),
                PathBuf::from("/srv/data.dnsd-kept/epoch-4-pass-17")
            )
        );
    }

    #[test]
    fn a_failed_sort_names_the_folder_left_unsorted_and_what_was_kept_before() {
        let failed = || PassError::RemoteFailed {
            what: "sorting what the pass set aside",
            node: "app3".into(),
            detail: "find: No space left on device".into(),
        };
        let (staging, _) = keep_dirs(Path::new("/srv/www"), 4, 17);
        let earlier = Kept {
            files: 2,
            bytes: 10,
            dir: "/srv/data.dnsd-kept/epoch-4-pass-17".into(),
            replaced: 0,
        };
        assert_eq!(
            crate::controller::describe(&unsorted(failed(), "app3", Some(&earlier), &staging)),
            "app3 (what the pass overwrote is kept in /srv/data.dnsd-kept/epoch-4-pass-17, \
             /srv/www.dnsd-kept/.staging-epoch-4-pass-17, unsorted): sorting what the pass \
             set aside on app3 failed: find: No space left on device"
        );
        assert_eq!(
            unsorted(failed(), "app3", None, &staging).to_string(),
            "app3 (what the pass overwrote is kept in /srv/www.dnsd-kept/.staging-epoch-4-pass-17, unsorted)"
        );
    }

    #[test]
    fn local_fence_reports_exit_status_and_stderr_and_times_out() {
        let values = [
            "www".to_owned(),
            "app1".to_owned(),
            "127.0.0.1".to_owned(),
            "3".to_owned(),
        ];
        let ok = [
            "sh",
            "-c",
            "test \"$DNSD_NODE\" = app1 && test \"$DNSD_EPOCH\" = 3",
        ]
        .map(String::from);
        assert!(run_local(&ok, &values, Duration::from_secs(5)).is_ok());
        let fail = ["sh", "-c", "echo 'power switch said no' >&2; exit 4"].map(String::from);
        let e = run_local(&fail, &values, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exit status: 4") && e.ends_with("power switch said no"),
            "{e}"
        );
        let slow = ["sleep", "5"].map(String::from);
        let e = run_local(&slow, &values, Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out"), "{e}");
        // A fence that writes far more than a pipe holds still ends when it exits.
        let chatty = [
            "sh",
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' x >&2; echo done >&2; exit 3",
        ]
        .map(String::from);
        let e = run_local(&chatty, &values, Duration::from_secs(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status: 3") && e.ends_with("done"), "{e}");
        // A timeout kills what the fence started too, not only the fence itself.
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let spawner = [
            "sh".to_owned(),
            "-c".to_owned(),
            format!("sleep 30 & echo $! > {}; wait", pid_file.display()),
        ];
        let e = run_local(&spawner, &values, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out"), "{e}");
        let pid: libc::pid_t = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed: gone, or a zombie waiting for init to reap it (state Z). SIGKILL is
        // delivered asynchronously, so the process may need a moment to get there.
        let state = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.chars().next())
                })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(state(), None | Some('Z')) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            matches!(state(), None | Some('Z')),
            "the fence's child {pid} survived its timeout (state {:?})",
            state()
        );
        let missing = ["/nonexistent/fence".to_owned()];
        assert!(
            crate::controller::describe(
                &run_local(&missing, &values, Duration::from_secs(1)).unwrap_err()
            )
            .starts_with("cannot run /nonexistent/fence")
        );
    }
}
