//! The command line: `console` with no subcommand opens the live view; the scriptable
//! subcommands do everything the view can do (status, events, every operator action)
//! and the demo starts a terminal server on a pool of three local members.
//!
//! Exit codes, for scripts:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done (an action was accepted) |
//! | 1 | dnsd cannot be reached, or another error (also: cancelled at the prompt) |
//! | 2 | usage: bad arguments, or an action that moves a primary without `--yes` and no terminal to ask on |
//! | 3 | dnsd refused the action; the reason is on stderr |

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dnsd_api::{Action as Request, Event, Health, Status};
use futures::StreamExt as _;

use crate::client::{Client, ClientError, Endpoint};
use crate::{plan, units};

/// Where the control socket is when neither `--socket` nor `DNSD_SOCKET` says.
pub const DEFAULT_SOCKET: &str = "/run/dnsd/control.sock";

const EXIT_CODES: &str = "Exit codes: 0 done, 1 dnsd unreachable or other error, \
2 usage (or a primary move without --yes and no terminal to confirm on), 3 refused by dnsd (reason on stderr).";

/// The command line of `console`.
#[derive(Debug, Parser)]
#[command(
    name = "console",
    version,
    about = "Operator console of dnsd: a live view (no subcommand) and scriptable commands",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How to reach dnsd; accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// dnsd's control socket [default: $DNSD_SOCKET, else /run/dnsd/control.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// A remote dnsd's TCP control API, e.g. http://10.0.0.5:8053 (needs --token-file)
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// File holding the bearer token for --url
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print services, members, roles, health and who would be promoted next
    Status {
        /// Print dnsd's status JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Print the event log
    Events {
        /// Keep printing events as they happen
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// Only events after this sequence number
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Move the primary to the next eligible member in round-robin order
    Failover(ActionArgs),
    /// Give the primary back to the preferred member (the first of the service)
    Failback(ActionArgs),
    /// Make NODE the primary
    Promote {
        /// The member to promote
        node: String,
        #[command(flatten)]
        args: ActionArgs,
    },
    /// Start a mirroring pass now (to every secondary, or to NODE)
    Sync {
        /// Only to this secondary
        node: Option<String>,
        #[command(flatten)]
        args: ActionArgs,
    },
    /// Switch maintenance on or off for NODE (a member in maintenance is never promoted)
    Maintenance {
        /// The member
        node: String,
        /// on or off
        state: OnOff,
        #[command(flatten)]
        args: ActionArgs,
    },
    /// Stop automatic decisions (for --service, or for every service)
    Pause(ActionArgs),
    /// Resume automatic decisions (for --service, or for every service)
    Resume(ActionArgs),
    /// Start a terminal server on a demo pool of three members on this machine
    Demo(DemoArgs),
}

/// Options of every operator action.
#[derive(Debug, Clone, Args)]
pub struct ActionArgs {
    /// The service (may be left out when dnsd has only one)
    #[arg(long, short)]
    pub service: Option<String>,
    /// Do not ask for confirmation (required without a terminal for actions that move a primary)
    #[arg(long, short)]
    pub yes: bool,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// Options of `console demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Work directory: keys, configuration, members' data, logs (an earlier demo's is replaced)
    #[arg(long, default_value = "/tmp/dnsd-demo")]
    pub dir: PathBuf,
    /// No TUI: print where things are, then read commands on stdin (kill NODE, revive NODE, status, quit)
    #[arg(long)]
    pub no_tui: bool,
    /// Where the demo's DNS answers
    #[arg(long, default_value = "127.0.0.1:5380")]
    pub dns: SocketAddr,
    /// The three members' loopback addresses
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.11,127.0.0.12,127.0.0.13"
    )]
    pub addresses: Vec<IpAddr>,
    /// Echo (heartbeat) port of every member
    #[arg(long, default_value_t = 7007)]
    pub echo_port: u16,
    /// sshd port of every member
    #[arg(long, default_value_t = 2222)]
    pub ssh_port: u16,
}

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; an action was accepted.
    Ok = 0,
    /// dnsd could not be reached, or something else failed.
    Error = 1,
    /// Bad arguments, or a primary move without `--yes` and no terminal.
    Usage = 2,
    /// dnsd refused the action.
    Refused = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure {
            exit: Exit::Error,
            error,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure {
            exit: Exit::Error,
            error: error.into(),
        }
    }
}

fn usage(message: String) -> Failure {
    Failure {
        exit: Exit::Usage,
        error: anyhow::anyhow!(message),
    }
}

/// Runs the parsed command line; returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("console: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    let outcome = runtime.block_on(dispatch(cli));
    // Tasks still running (an event stream, a demo's echo) end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => Exit::Ok.into(),
        Err(Failure { exit, error }) => {
            eprintln!("console: {error:#}");
            exit.into()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let Cli {
        connection,
        command,
    } = cli;
    if let Some(Command::Demo(args)) = command {
        return crate::demo::run(args).await.map_err(Failure::from);
    }
    let client = Client::new(connection.endpoint()?).with_operator(operator());
    match command {
        None => crate::tui::run(client, None).await.map_err(Failure::from),
        Some(Command::Status { json }) => status(&client, json).await,
        Some(Command::Events {
            follow,
            json,
            since,
        }) => events(&client, follow, json, since).await,
        Some(Command::Failover(a)) => {
            act(&client, Request::Failover { service: a.service }, a.yes).await
        }
        Some(Command::Failback(a)) => {
            act(&client, Request::Failback { service: a.service }, a.yes).await
        }
        Some(Command::Promote { node, args }) => {
            let request = Request::Promote {
                service: args.service,
                node,
            };
            act(&client, request, args.yes).await
        }
        Some(Command::Sync { node, args }) => {
            let request = Request::Sync {
                service: args.service,
                node,
            };
            act(&client, request, args.yes).await
        }
        Some(Command::Maintenance { node, state, args }) => {
            let request = Request::Maintenance {
                node,
                on: state == OnOff::On,
            };
            act(&client, request, args.yes).await
        }
        Some(Command::Pause(a)) => act(&client, Request::Pause { service: a.service }, a.yes).await,
        Some(Command::Resume(a)) => {
            act(&client, Request::Resume { service: a.service }, a.yes).await
        }
        Some(Command::Demo(_)) => Ok(()),
    }
}

impl Connection {
    /// The endpoint these options name: `--url` (with its token), else the socket.
    fn endpoint(&self) -> Result<Endpoint, Failure> {
        match &self.url {
            Some(url) => {
                let Some(token_file) = &self.token_file else {
                    return Err(usage(
                        "--url needs --token-file: dnsd's TCP control API requires a bearer token"
                            .into(),
                    ));
                };
                let addr = parse_url(url).map_err(usage)?;
                let token = std::fs::read_to_string(token_file)
                    .with_context(|| format!("cannot read token file {}", token_file.display()))?
                    .trim()
                    .to_owned();
                if token.is_empty() {
                    return Err(usage(format!(
                        "token file {} is empty",
                        token_file.display()
                    )));
                }
                Ok(Endpoint::Tcp { addr, token })
            }
            None => {
                if self.token_file.is_some() {
                    return Err(usage("--token-file is only used with --url".into()));
                }
                let socket = self
                    .socket
                    .clone()
                    .or_else(|| std::env::var_os("DNSD_SOCKET").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
                Ok(Endpoint::Unix(socket))
            }
        }
    }
}

/// `http://HOST:PORT[/]` → `HOST:PORT`.
fn parse_url(url: &str) -> Result<String, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "--url {url:?}: only http:// is supported (dnsd's TCP API has no TLS; use an SSH tunnel across untrusted networks), not {scheme}://"
            ));
        }
        None => url,
    };
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains('/') || !host_port.contains(':') {
        return Err(format!(
            "--url {url:?} must be http://HOST:PORT (e.g. http://10.0.0.5:8053)"
        ));
    }
    Ok(host_port.to_owned())
}

/// "console <user>@<host>": who is acting, for the daemon's log.
pub fn operator() -> String {
    let user = user_name()
        .ok()
        .or_else(|| std::env::var("USER").ok())
        // SAFETY: geteuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::geteuid() }));
    format!("console {user}@{}", hostname())
}

/// The name of the user this process runs as, from the password database.
pub(crate) fn user_name() -> anyhow::Result<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: passwd is plain old data (integers and pointers); all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwuid_r writes into pwd and buf
    // (of the length given) and sets result to &pwd or null.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        anyhow::bail!("user {uid} is not in the password database");
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r, which outlives this.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

async fn status(client: &Client, json: bool) -> Result<(), Failure> {
    let status = client.status().await?;
    let text = if json {
        serde_json::to_string_pretty(&status).context("cannot render the status as JSON")? + "\n"
    } else {
        render_status(&status)
    };
    print_out(&text).map(drop)
}

/// Writes to stdout. A closed pipe (`| head`) is not an error: it returns false, so a
/// follower can stop.
fn print_out(text: &str) -> Result<bool, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot write to stdout")
            .into()),
    }
}

/// The status as a readable table, one block per service.
pub fn render_status(st: &Status) -> String {
    let hb = &st.heartbeat;
    let mut out = format!(
        "dnsd: zone {}, serial {}, ttl {}s, heartbeat {} port {} every {} (fall {}, rise {}), up {}\n",
        st.zone,
        st.serial,
        st.ttl,
        hb.protocol,
        hb.port,
        units::span(hb.interval_ms),
        hb.fall,
        hb.rise,
        units::span(st.now_ms.saturating_sub(st.started_ms))
    );
    for svc in &st.services {
        let mut state = vec![if svc.paused { "PAUSED" } else { "running" }.to_owned()];
        if svc.stranded {
            state.push("STRANDED".into());
        }
        if let Some(t) = &svc.transition {
            state.push(format!("in progress: {t}"));
        }
        out.push_str(&format!(
            "\nservice {} ({}): primary {}, epoch {}, {}; failback {}; next {}\n",
            svc.name,
            svc.fqdn,
            svc.primary,
            svc.epoch,
            state.join(", "),
            if svc.failback.is_empty() {
                "manual"
            } else {
                &svc.failback
            },
            svc.next
                .as_deref()
                .unwrap_or("none (no member can be promoted)")
        ));
        let mut rows = vec![[
            "NODE".to_owned(),
            "ADDRESS".to_owned(),
            "ROLE".to_owned(),
            "HEALTH".to_owned(),
            "RTT".to_owned(),
            "SYNC".to_owned(),
            "LAG".to_owned(),
            "NOTES".to_owned(),
        ]];
        for m in &svc.members {
            let node = st.node(&m.node);
            let rtt = node
                .filter(|n| n.health != Health::Down)
                .and_then(|n| n.rtt_us)
                .map(units::rtt)
                .unwrap_or_else(|| "-".into());
            let sync = match (&m.sync, svc.paths.is_empty(), m.node == svc.primary) {
                (_, true, _) => "-".to_owned(),
                (_, false, true) => "source".to_owned(),
                (None, _, _) => "-".to_owned(),
                (Some(y), _, _) => match (&y.running, y.last_sync_ms) {
                    (Some(r), _) => format!("{} pass {}%", r.kind, r.percent),
                    (None, _) if y.failures > 0 => format!("failing x{}", y.failures),
                    (None, Some(t)) => format!("synced {}", units::ago(t, st.now_ms)),
                    (None, None) => "never synced".into(),
                },
            };
            let lag = m
                .sync
                .as_ref()
                .and_then(|y| y.lag_ms)
                .map(units::span)
                .unwrap_or_else(|| "-".into());
            let mut notes = Vec::new();
            if svc.preferred == m.node {
                notes.push("preferred".to_owned());
            }
            if node.is_some_and(|n| n.maintenance) {
                notes.push("maintenance".into());
            }
            if svc.next.as_deref() == Some(m.node.as_str()) {
                notes.push("next".into());
            }
            if m.node != svc.primary
                && let Some(why) = &m.skip_reason
            {
                notes.push(format!("skipped: {why}"));
            }
            rows.push([
                m.node.clone(),
                node.map(|n| n.address.clone()).unwrap_or_default(),
                m.role.to_string(),
                node.map(|n| n.health.to_string()).unwrap_or_default(),
                rtt,
                sync,
                lag,
                notes.join(", "),
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::from(" ");
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(&format!(" {cell}"));
                } else {
                    line.push_str(&format!(" {cell:<w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// One event as a log line.
pub fn render_event(e: &Event) -> String {
    let mut subject = Vec::new();
    if let Some(s) = &e.service {
        subject.push(s.clone());
    }
    if let Some(n) = &e.node {
        subject.push(n.clone());
    }
    if let (Some(old), Some(new)) = (&e.old_primary, &e.new_primary) {
        subject.push(format!("{old}->{new}"));
    }
    if let (Some(epoch), Some(_)) = (e.epoch, &e.new_primary) {
        subject.push(format!("epoch {epoch}"));
    }
    let subject = if subject.is_empty() {
        String::new()
    } else {
        format!("[{}] ", subject.join(" "))
    };
    format!(
        "{} #{} {} {subject}{}\n",
        units::timestamp(e.at_ms),
        e.seq,
        e.kind,
        e.reason
    )
}

async fn events(client: &Client, follow: bool, json: bool, since: u64) -> Result<(), Failure> {
    let render = |e: &Event| -> Result<String, Failure> {
        if json {
            Ok(serde_json::to_string(e).context("cannot render an event as JSON")? + "\n")
        } else {
            Ok(render_event(e))
        }
    };
    if !follow {
        let mut text = String::new();
        for e in client.events(since).await? {
            text.push_str(&render(&e)?);
        }
        return print_out(&text).map(drop);
    }
    let mut stream = client.stream_events(since).await?;
    while let Some(item) = stream.next().await {
        let event = item?;
        if !print_out(&render(&event)?)? {
            return Ok(());
        }
    }
    Err(anyhow::anyhow!("dnsd closed the event stream (was it stopped?)").into())
}

async fn act(client: &Client, request: Request, yes: bool) -> Result<(), Failure> {
    if plan::moves_primary(&request) && !yes {
        if !std::io::stdin().is_terminal() {
            return Err(usage(format!(
                "{request} moves a primary: confirm with --yes (there is no terminal to ask on)"
            )));
        }
        let status = client.status().await?;
        if !ask(&plan::describe(&request, Some(&status)))? {
            return Err(anyhow::anyhow!("cancelled: nothing was sent").into());
        }
    }
    let reply = client.act(&request).await?;
    if reply.accepted {
        print_out(&format!("{}\n", reply.message)).map(drop)
    } else {
        Err(Failure {
            exit: Exit::Refused,
            error: anyhow::anyhow!("dnsd refused {request}: {}", reply.message),
        })
    }
}

/// Shows the plan on stderr and reads `y` from the terminal.
fn ask(plan: &plan::Plan) -> Result<bool, Failure> {
    let mut err = std::io::stderr().lock();
    let mut text = format!("{}\n", plan.question);
    if !plan.steps.is_empty() {
        text.push_str(&format!("{}\n", plan.steps));
    }
    if let Some(w) = &plan.warning {
        text.push_str(&format!("warning: {w}\n"));
    }
    text.push_str("Go ahead? [y/N] ");
    err.write_all(text.as_bytes())
        .and_then(|()| err.flush())
        .context("cannot write the prompt")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn socket_is_accepted_before_and_after_the_subcommand() {
        let before = parse(&["console", "--socket", "/tmp/a.sock", "status", "--json"]);
        let after = parse(&["console", "status", "--socket", "/tmp/a.sock"]);
        for cli in [before, after] {
            assert_eq!(
                cli.connection.socket.as_deref(),
                Some(std::path::Path::new("/tmp/a.sock"))
            );
            assert!(matches!(cli.command, Some(Command::Status { .. })));
        }
        let promote = parse(&["console", "promote", "app2", "--service", "www", "--yes"]);
        let Some(Command::Promote { node, args }) = promote.command else {
            panic!()
        };
        assert_eq!(
            (node.as_str(), args.service.as_deref(), args.yes),
            ("app2", Some("www"), true)
        );
        let m = parse(&["console", "maintenance", "app3", "on"]);
        assert!(matches!(
            m.command,
            Some(Command::Maintenance {
                state: OnOff::On,
                ..
            })
        ));
        assert!(
            parse(&["console"]).command.is_none(),
            "no subcommand: the TUI"
        );
        assert!(Cli::try_parse_from(["console", "maintenance", "app3", "maybe"]).is_err());
    }

    #[test]
    fn urls_need_a_token_and_plain_http() {
        assert_eq!(parse_url("http://10.0.0.5:8053/").unwrap(), "10.0.0.5:8053");
        assert_eq!(parse_url("[::1]:8053").unwrap(), "[::1]:8053");
        assert!(
            parse_url("https://10.0.0.5:8053")
                .unwrap_err()
                .contains("no TLS")
        );
        assert!(parse_url("http://10.0.0.5").is_err());
        let c = Connection {
            socket: None,
            url: Some("http://127.0.0.1:1".into()),
            token_file: None,
        };
        let err = c.endpoint().unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(err.error.to_string().contains("--token-file"));
    }

    #[test]
    fn token_file_is_read_and_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let c = Connection {
            socket: None,
            url: Some("http://127.0.0.1:8053".into()),
            token_file: Some(file),
        };
        let Endpoint::Tcp { addr, token } = c.endpoint().unwrap() else {
            panic!()
        };
        assert_eq!(
            (addr.as_str(), token.as_str()),
            ("127.0.0.1:8053", "0123456789abcdef0123")
        );
    }

    #[test]
    fn status_table_names_roles_sync_and_skips() {
        let text = render_status(&fixtures::member_down());
        insta::assert_snapshot!("status_table", text);
        assert!(text.contains("skipped: is down"), "{text}");
    }

    #[test]
    fn events_print_as_timestamped_lines() {
        let events = fixtures::events();
        assert_eq!(
            render_event(&events[2]),
            "2023-11-14T22:11:46.000Z #3 failover [www app1->app2 epoch 3] app1 is down; app2 promoted (first eligible after app1)\n"
        );
        let mut bare = events[0].clone();
        bare.service = None;
        assert_eq!(
            render_event(&bare),
            "2023-11-14T22:00:46.000Z #1 started state restored\n"
        );
    }

    #[test]
    fn operator_names_user_and_host() {
        let op = operator();
        let user = user_name().unwrap();
        assert!(op.starts_with(&format!("console {user}@")), "{op}");
    }
}
