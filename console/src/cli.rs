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
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dnsd_api::{Action as Request, ActionReply, Event, RefusalKind};
use futures::StreamExt as _;

use crate::client::{Client, ClientError, Endpoint, TlsClient, Trust};
use crate::demo::DemoArgs;
use crate::operator::operator;
use crate::{plan, render};

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
    /// A remote dnsd's TCP control API, https://HOST:PORT, its certificate verified
    /// (http:// only to a loopback address); needs --token-file
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// File holding the bearer token for --url
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust only the CA certificates in this PEM file for --url, not the system's (for
    /// a self-signed setup)
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
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
    /// Lift the flap quarantine of NODE (in --service, or wherever it is quarantined)
    Unquarantine {
        /// The quarantined member
        node: String,
        #[command(flatten)]
        args: ActionArgs,
    },
    /// Stop automatic decisions (for --service, or for every service)
    Pause(ActionArgs),
    /// Resume automatic decisions (for --service, or for every service)
    Resume(ActionArgs),
    /// Have dnsd re-read its configuration file and apply it (refused, with the file's
    /// problems, when it is not usable; the running configuration stays then)
    Reload,
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
    let send = |request: Request, yes: bool| act(&client, &connection, request, yes);
    match command {
        None => crate::tui::run(client.clone(), None)
            .await
            .map_err(Failure::from),
        Some(Command::Status { json }) => status(&client, json).await,
        Some(Command::Events {
            follow,
            json,
            since,
        }) => events(&client, follow, json, since).await,
        Some(Command::Failover(a)) => send(Request::Failover { service: a.service }, a.yes).await,
        Some(Command::Failback(a)) => send(Request::Failback { service: a.service }, a.yes).await,
        Some(Command::Promote { node, args }) => {
            let request = Request::Promote {
                service: args.service,
                node,
            };
            send(request, args.yes).await
        }
        Some(Command::Sync { node, args }) => {
            let request = Request::Sync {
                service: args.service,
                node,
            };
            send(request, args.yes).await
        }
        Some(Command::Unquarantine { node, args }) => {
            let request = Request::Unquarantine {
                service: args.service,
                node,
            };
            send(request, args.yes).await
        }
        Some(Command::Maintenance { node, state, args }) => {
            let request = Request::Maintenance {
                node,
                on: state == OnOff::On,
            };
            send(request, args.yes).await
        }
        Some(Command::Pause(a)) => send(Request::Pause { service: a.service }, a.yes).await,
        Some(Command::Resume(a)) => send(Request::Resume { service: a.service }, a.yes).await,
        Some(Command::Reload) => reload(&client, &connection).await,
        Some(Command::Demo(_)) => Ok(()),
    }
}

impl Connection {
    /// The endpoint these options name: `--url` (with its token, and TLS unless it is
    /// `http://` to loopback), else the socket.
    fn endpoint(&self) -> Result<Endpoint, Failure> {
        let Some(url) = &self.url else {
            if self.token_file.is_some() {
                return Err(usage("--token-file is only used with --url".into()));
            }
            if self.ca_file.is_some() {
                return Err(usage(
                    "--ca-file is only used with an https:// --url".into(),
                ));
            }
            let socket = self
                .socket
                .clone()
                .or_else(|| std::env::var_os("DNSD_SOCKET").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
            return Ok(Endpoint::Unix(socket));
        };
        let Some(token_file) = &self.token_file else {
            return Err(usage(
                "--url needs --token-file: dnsd's TCP control API requires a bearer token".into(),
            ));
        };
        let target = parse_url(url).map_err(usage)?;
        if !target.tls && self.ca_file.is_some() {
            return Err(usage(
                "--ca-file is only used with an https:// --url".into(),
            ));
        }
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
        let tls = if target.tls {
            let trust = match &self.ca_file {
                Some(file) => Trust::CaFile(file.clone()),
                None => Trust::System,
            };
            Some(TlsClient::new(&target.host, &trust).map_err(anyhow::Error::from)?)
        } else {
            None
        };
        Ok(Endpoint::Tcp {
            addr: target.addr,
            token,
            tls,
        })
    }
}

/// Where `--url` points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `HOST:PORT`, as connected to.
    addr: String,
    /// The host alone (IPv6 without brackets): the name dnsd's certificate must carry.
    host: String,
    /// False only for `http://` to a loopback address.
    tls: bool,
}

/// `https://HOST:PORT[/]` (or `HOST:PORT`), or `http://HOST:PORT[/]` with a loopback
/// address for HOST.
fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "--url {url:?}: use https:// (or http:// to a loopback address), not {scheme}://"
            ));
        }
        None => (true, url),
    };
    let addr = rest.trim_end_matches('/');
    let malformed =
        || format!("--url {url:?} must be https://HOST:PORT (e.g. https://10.0.0.5:8053)");
    let (host, port) = match addr.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").ok_or_else(malformed)?,
        None => addr.rsplit_once(':').ok_or_else(malformed)?,
    };
    if host.is_empty() || host.contains(['/', '[', ']']) || port.parse::<u16>().is_err() {
        return Err(malformed());
    }
    let loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if !tls && !loopback {
        return Err(format!(
            "--url {url:?}: plain http:// only to a loopback address (127.0.0.1, [::1]): the \
             token would cross the network in clear; use https://"
        ));
    }
    Ok(Target {
        addr: addr.to_owned(),
        host: host.to_owned(),
        tls,
    })
}

async fn status(client: &Client, json: bool) -> Result<(), Failure> {
    let status = client.status().await?;
    let text = if json {
        serde_json::to_string_pretty(&status).context("cannot render the status as JSON")? + "\n"
    } else {
        render::status_table(&status)
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

async fn events(client: &Client, follow: bool, json: bool, since: u64) -> Result<(), Failure> {
    let render = |e: &Event| -> Result<String, Failure> {
        if json {
            Ok(serde_json::to_string(e).context("cannot render an event as JSON")? + "\n")
        } else {
            Ok(render::event_line(e))
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

async fn act(
    client: &Client,
    connection: &Connection,
    request: Request,
    yes: bool,
) -> Result<(), Failure> {
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
    let args = command_args(&request, yes);
    answered(reply, &request.to_string(), &args, connection)
}

async fn reload(client: &Client, connection: &Connection) -> Result<(), Failure> {
    let reply = client.reload().await?;
    answered(reply, "reload", "reload", connection)
}

/// Prints an accepted action's message; a refusal is exit 3 with dnsd's reason and, when
/// a follower refused, how to send the command to the leader.
fn answered(
    reply: ActionReply,
    what: &str,
    args: &str,
    connection: &Connection,
) -> Result<(), Failure> {
    if reply.accepted {
        return print_out(&format!("{}\n", reply.message)).map(drop);
    }
    let mut error = format!("dnsd refused {what}: {}", reply.message);
    if let Some(hint) = leader_hint(&reply, args, connection) {
        error.push('\n');
        error.push_str(&hint);
    }
    Err(Failure {
        exit: Exit::Refused,
        error: anyhow::anyhow!(error),
    })
}

/// For a `not_leader` refusal: how to send the same command to the leader, when the
/// refusal names the leader's control URL (a leader with `[control] tcp`).
///
/// The console does not send it there by itself: the URL comes from the refusing
/// terminal server, and following it would hand the token to whatever it names.
pub fn leader_hint(reply: &ActionReply, args: &str, connection: &Connection) -> Option<String> {
    if reply.kind != Some(RefusalKind::NotLeader) {
        return None;
    }
    let Some(url) = render::contact_url(&reply.message) else {
        return Some(
            "the leader published no control URL (it has no [control] tcp): run the command on \
             its host"
                .to_owned(),
        );
    };
    let token = connection
        .token_file
        .as_ref()
        .map_or_else(|| "FILE".to_owned(), |f| f.display().to_string());
    let ca = match &connection.ca_file {
        Some(ca) if url.starts_with("https://") => format!(" --ca-file {}", ca.display()),
        _ => String::new(),
    };
    Some(format!(
        "send it to the leader:  console --url {url} --token-file {token}{ca} {args}"
    ))
}

/// The subcommand and arguments that send `request` again, for hints.
fn command_args(request: &Request, yes: bool) -> String {
    let svc = |s: &Option<String>| s.as_ref().map(|s| format!(" --service {s}"));
    let mut args = match request {
        Request::Failover { service } => format!("failover{}", svc(service).unwrap_or_default()),
        Request::Failback { service } => format!("failback{}", svc(service).unwrap_or_default()),
        Request::Promote { service, node } => {
            format!("promote {node}{}", svc(service).unwrap_or_default())
        }
        Request::Sync { service, node } => format!(
            "sync{}{}",
            node.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
            svc(service).unwrap_or_default()
        ),
        Request::Maintenance { node, on } => {
            format!("maintenance {node} {}", if *on { "on" } else { "off" })
        }
        Request::Pause { service } => format!("pause{}", svc(service).unwrap_or_default()),
        Request::Resume { service } => format!("resume{}", svc(service).unwrap_or_default()),
        Request::Unquarantine { service, node } => {
            format!("unquarantine {node}{}", svc(service).unwrap_or_default())
        }
    };
    if yes && plan::moves_primary(request) {
        args.push_str(" --yes");
    }
    args
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
    fn urls_need_a_token_and_https_off_loopback() {
        let target = |addr: &str, host: &str, tls: bool| Target {
            addr: addr.into(),
            host: host.into(),
            tls,
        };
        assert_eq!(
            parse_url("https://10.0.0.5:8053/").unwrap(),
            target("10.0.0.5:8053", "10.0.0.5", true)
        );
        assert_eq!(
            parse_url("[::1]:8053").unwrap(),
            target("[::1]:8053", "::1", true)
        );
        assert_eq!(
            parse_url("https://dnsd.example.net:8053").unwrap(),
            target("dnsd.example.net:8053", "dnsd.example.net", true)
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8053/").unwrap(),
            target("127.0.0.1:8053", "127.0.0.1", false)
        );
        assert_eq!(
            parse_url("http://[::1]:8053").unwrap(),
            target("[::1]:8053", "::1", false)
        );
        for clear in ["http://10.0.0.5:8053", "http://localhost:8053"] {
            let err = parse_url(clear).unwrap_err();
            assert!(
                err.contains("plain http:// only to a loopback address"),
                "{err}"
            );
        }
        assert!(
            parse_url("ftp://10.0.0.5:8053")
                .unwrap_err()
                .contains("use https://")
        );
        for bad in [
            "https://10.0.0.5",
            "https://:8053",
            "https://h:p",
            "https://[::1]",
            "https://a/b:1",
        ] {
            assert!(
                parse_url(bad)
                    .unwrap_err()
                    .contains("must be https://HOST:PORT"),
                "{bad}"
            );
        }
        let c = Connection {
            socket: None,
            url: Some("http://127.0.0.1:1".into()),
            token_file: None,
            ca_file: None,
        };
        let err = c.endpoint().unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(err.error.to_string().contains("--token-file"));
    }

    #[test]
    fn ca_file_goes_with_https_only() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
        let ca = dir.path().join("ca.pem");
        let with = |url: Option<&str>, ca_file: Option<PathBuf>| Connection {
            socket: None,
            url: url.map(Into::into),
            token_file: url.map(|_| token.clone()),
            ca_file,
        };
        for c in [
            with(None, Some(ca.clone())),
            with(Some("http://127.0.0.1:8053"), Some(ca.clone())),
        ] {
            let err = c.endpoint().unwrap_err();
            assert_eq!(err.exit, Exit::Usage);
            assert_eq!(
                err.error.to_string(),
                "--ca-file is only used with an https:// --url"
            );
        }
        // A CA file that is missing, or holds no certificate, is an error naming it.
        let err = with(Some("https://127.0.0.1:8053"), Some(ca.clone()))
            .endpoint()
            .unwrap_err();
        assert!(
            err.error
                .to_string()
                .starts_with(&format!("cannot read CA file {}: ", ca.display())),
            "{:#}",
            err.error
        );
        std::fs::write(&ca, "no certificate here\n").unwrap();
        let err = with(Some("https://127.0.0.1:8053"), Some(ca.clone()))
            .endpoint()
            .unwrap_err();
        assert_eq!(
            err.error.to_string(),
            format!(
                "CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ca.display()
            )
        );
    }

    #[test]
    fn a_not_leader_refusal_says_how_to_reach_the_leader() {
        let refusal =
            |message: &str| ActionReply::refused(RefusalKind::NotLeader, message.to_owned());
        let socket = Connection {
            socket: None,
            url: None,
            token_file: None,
            ca_file: None,
        };
        let reply = refusal(
            "ts2 does not decide: ts1 leads; send the action there (https://10.0.0.31:8053)",
        );
        let args = command_args(
            &Request::Promote {
                service: Some("www".into()),
                node: "app2".into(),
            },
            true,
        );
        assert_eq!(
            leader_hint(&reply, &args, &socket).as_deref(),
            Some(
                "send it to the leader:  console --url https://10.0.0.31:8053 --token-file FILE \
                 promote app2 --service www --yes"
            )
        );
        // Over TCP already: the same token and CA files.
        let tcp = Connection {
            socket: None,
            url: Some("https://10.0.0.32:8053".into()),
            token_file: Some("/etc/dnsd/token".into()),
            ca_file: Some("/etc/dnsd/ca.pem".into()),
        };
        assert_eq!(
            leader_hint(&reply, "reload", &tcp).as_deref(),
            Some(
                "send it to the leader:  console --url https://10.0.0.31:8053 --token-file \
                 /etc/dnsd/token --ca-file /etc/dnsd/ca.pem reload"
            )
        );
        let no_contact = refusal("ts2 does not decide: ts1 leads; send the action there");
        assert!(
            leader_hint(&no_contact, "failover", &socket)
                .unwrap()
                .contains("no control URL")
        );
        let other = ActionReply::refused(RefusalKind::Busy, "busy (http://x:1)".into());
        assert_eq!(leader_hint(&other, "failover", &socket), None);
        assert_eq!(
            command_args(
                &Request::Sync {
                    service: None,
                    node: Some("app3".into())
                },
                true
            ),
            "sync app3",
            "--yes only where it is needed"
        );
        assert_eq!(
            command_args(
                &Request::Maintenance {
                    node: "app3".into(),
                    on: false
                },
                false
            ),
            "maintenance app3 off"
        );
    }

    #[test]
    fn reload_is_a_subcommand() {
        assert!(matches!(
            parse(&["console", "reload", "--socket", "/tmp/a.sock"]).command,
            Some(Command::Reload)
        ));
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
            ca_file: None,
        };
        let Endpoint::Tcp { addr, token, .. } = c.endpoint().unwrap() else {
            panic!()
        };
        assert_eq!(
            (addr.as_str(), token.as_str()),
            ("127.0.0.1:8053", "0123456789abcdef0123")
        );
    }
}
