//! An RFC 862 echo responder on many loopback addresses at once, TCP and UDP, used by
//! the `scale` example as its pool (it runs in a separate process so that its CPU time
//! is not counted as the monitor's).
//!
//! ```text
//! echod --addrs 127.0.1.1-127.0.4.232 --port 17007
//! echod --count 1000 --base 127.0.1.1 --port 17007 --protocols udp
//! ```
//!
//! Only 127.0.0.0/8 addresses are accepted (Linux answers on all of them without
//! configuration). Once every socket is bound it prints one JSON line on stdout,
//! `{"ready":true,"addresses":N,"port":P,"silent":S,"pid":PID}`, and serves until
//! killed. `--silent S` makes the first S addresses swallow input without echoing.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::{debug, warn};

/// Upper bound on the number of addresses, to catch a mistyped range.
const MAX_ADDRESSES: u32 = 65_536;
/// A connection is closed after this long, so a stuck client cannot pin a task
/// forever (probes last milliseconds).
const MAX_CONNECTION: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocols {
    Tcp,
    Udp,
    Both,
}

/// RFC 862 echo responder on a range of loopback addresses.
#[derive(Debug, Parser)]
struct Args {
    /// Addresses to serve: one address or an inclusive range FIRST-LAST.
    #[arg(long, conflicts_with = "count")]
    addrs: Option<String>,
    /// Serve this many consecutive addresses starting at --base.
    #[arg(long)]
    count: Option<u32>,
    /// First address for --count.
    #[arg(long, default_value = "127.0.1.1")]
    base: Ipv4Addr,
    /// Echo port on every address.
    #[arg(long, default_value_t = 17007)]
    port: u16,
    /// Which transports to serve.
    #[arg(long, value_enum, default_value_t = Protocols::Both)]
    protocols: Protocols,
    /// The first N addresses accept (TCP) or receive (UDP) but never echo, to stand
    /// in for hung members.
    #[arg(long, default_value_t = 0)]
    silent: usize,
    /// Runtime worker threads; 1 runs a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let addresses = addresses(&args)?;
    raise_fd_limit();

    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("building the tokio runtime")?;
    runtime.block_on(serve(args, addresses))
}

/// The addresses named by --addrs or --count/--base, all in 127.0.0.0/8.
fn addresses(args: &Args) -> anyhow::Result<Vec<Ipv4Addr>> {
    let (first, last) = match (&args.addrs, args.count) {
        (Some(spec), _) => match spec.split_once('-') {
            Some((a, b)) => (
                a.trim()
                    .parse::<Ipv4Addr>()
                    .with_context(|| format!("bad first address in --addrs {spec:?}"))?,
                b.trim()
                    .parse::<Ipv4Addr>()
                    .with_context(|| format!("bad last address in --addrs {spec:?}"))?,
            ),
            None => {
                let one = spec
                    .trim()
                    .parse::<Ipv4Addr>()
                    .with_context(|| format!("bad address in --addrs {spec:?}"))?;
                (one, one)
            }
        },
        (None, Some(0)) => bail!("--count must be at least 1"),
        (None, Some(count)) => {
            let last = u32::from(args.base)
                .checked_add(count - 1)
                .context("--count runs past 255.255.255.255")?;
            (args.base, Ipv4Addr::from(last))
        }
        (None, None) => bail!("give --addrs FIRST-LAST or --count N"),
    };
    let (lo, hi) = (u32::from(first), u32::from(last));
    if hi < lo {
        bail!("address range {first}-{last} is reversed");
    }
    if hi - lo >= MAX_ADDRESSES {
        bail!("address range {first}-{last} has more than {MAX_ADDRESSES} addresses");
    }
    if !first.is_loopback() || !last.is_loopback() {
        bail!("address range {first}-{last} leaves 127.0.0.0/8; only loopback is served");
    }
    Ok((lo..=hi).map(Ipv4Addr::from).collect())
}

/// Thousands of sockets need more than the common soft limit of 1024 descriptors:
/// raise the soft limit to the hard one.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !raised {
        warn!(
            error = %std::io::Error::last_os_error(),
            "could not raise the open-file limit"
        );
    }
}

async fn serve(args: Args, addresses: Vec<Ipv4Addr>) -> anyhow::Result<()> {
    let tcp = matches!(args.protocols, Protocols::Tcp | Protocols::Both);
    let udp = matches!(args.protocols, Protocols::Udp | Protocols::Both);
    // Bind everything before announcing readiness, so a client never races the bind.
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    for (i, &ip) in addresses.iter().enumerate() {
        let addr = SocketAddr::from((ip, args.port));
        let echo = i >= args.silent;
        if tcp {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding tcp {addr}"))?;
            listeners.push((listener, echo));
        }
        if udp {
            let socket = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding udp {addr}"))?;
            sockets.push((socket, echo));
        }
    }
    for (listener, echo) in listeners {
        tokio::spawn(serve_tcp(listener, echo));
    }
    for (socket, echo) in sockets {
        tokio::spawn(serve_udp(socket, echo));
    }

    let ready = serde_json::json!({
        "ready": true,
        "addresses": addresses.len(),
        "port": args.port,
        "silent": args.silent.min(addresses.len()),
        "pid": std::process::id(),
    });
    // One short blocking write: tokio's stdout needs a feature the workspace leaves off.
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ready}").context("writing the ready line")?;
        stdout.flush().context("flushing the ready line")?;
    }

    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}

async fn serve_tcp(listener: TcpListener, echo: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_connection(stream, echo));
            }
            Err(error) => {
                // Typically out of descriptors: back off instead of spinning.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle_connection(mut stream: TcpStream, echo: bool) {
    let (mut reader, mut writer) = stream.split();
    let result = if echo {
        tokio::time::timeout(MAX_CONNECTION, tokio::io::copy(&mut reader, &mut writer)).await
    } else {
        tokio::time::timeout(
            MAX_CONNECTION,
            tokio::io::copy(&mut reader, &mut tokio::io::sink()),
        )
        .await
    };
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => debug!(%error, "echo connection failed"),
        Err(_) => debug!("echo connection open too long, closing"),
    }
}

async fn serve_udp(socket: UdpSocket, echo: bool) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((_, _)) if !echo => {}
            Ok((n, peer)) => {
                if let Err(error) = socket.send_to(&buf[..n], peer).await {
                    debug!(%error, %peer, "udp echo send failed");
                }
            }
            Err(error) => debug!(%error, "udp receive failed"),
        }
    }
}
