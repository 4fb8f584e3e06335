//! The shared main of the three daemons: node, accept loop, signals, shutdown.
//!
//! [`main_for`] parses a role's options, sets up logging, locks the base directory, binds
//! the QUIC [`Node`] with the role's certificate, lets the role start ([`Handler`]), and
//! then serves: every authorized call is answered on its own task. The answers every role
//! gives the same way (host type, pid, version, shutdown) are handled here. SIGTERM and
//! SIGINT (or a `shutdown` command) stop accepting calls and ask the role to stop its
//! background work; a second signal forces it. A daemon killed instead restarts from its
//! base directory, which every role keeps consistent at every instant ([`crate::persist`]).
//! What the roles' calls run in (context, refusals, bridges) is [`crate::session`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tracing::{error, info, warn};
use walb_wire::msg::{Command, Query, Reply, Request};
use walb_wire::{IncomingCall, Node, NodeConfig, PeerId, Role, TlsFiles};

use crate::opts::{ArchiveOpts, CommonOpts, ProxyOpts, StorageOpts};
use crate::persist::{self, BaseDir};
use crate::session::{answer, resolve, Ctx, Handler};

/// Logs to stderr or to the log file, which is created with the daemon's file mode (an
/// existing, looser one is tightened, with a log line).
fn init_logging(common: &CommonOpts) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let default = if common.debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("WALB_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("{default},quinn=warn,quinn_proto=warn,rustls=warn"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if common.log_file.as_os_str() == "-" {
        builder.with_writer(std::io::stderr).init();
    } else {
        let path = if common.log_file.is_relative() {
            common.base_dir.join(&common.log_file)
        } else {
            common.log_file.clone()
        };
        // Never through a link planted at the name: a daemon runs as root.
        let f = walb_wire::files::open_append(&path, persist::file_mode())
            .with_context(|| format!("opening log file {}", path.display()))?;
        let tightened = persist::tighten(&f, persist::file_mode());
        builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init();
        match tightened {
            Ok(Some((old, new))) => warn!(
                file = %path.display(),
                "log file was mode {old:04o}, readable by others: tightened to {new:04o}"
            ),
            Ok(None) => {}
            Err(e) => warn!(
                file = %path.display(),
                "cannot tighten the mode of the log file ({e}); others may read it"
            ),
        }
    }
    Ok(())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Sets up a daemon from its common options: umask and modes, base directory, logging,
/// node.
pub fn setup(role: Role, common: &CommonOpts, rt: &tokio::runtime::Runtime) -> Result<Arc<Ctx>> {
    persist::set_group_access(common.group_access);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(persist::umask()));
    persist::create_base_dir(&common.base_dir)?;
    init_logging(common)?;
    let base = BaseDir::lock(&common.base_dir)?;
    let id = common.id.clone().unwrap_or_else(host_name);
    let me = PeerId::new(role, &id).with_context(|| format!("node id {id:?}"))?;
    let cert_dir: PathBuf = match &common.cert_dir {
        Some(d) => d.clone(),
        None => walb_wire::certs::default_cert_dir()
            .context("no certificate directory: pass --cert-dir")?,
    };
    let files = TlsFiles::in_dir(&cert_dir, &me);
    let bind = rt.block_on(resolve(&common.listen))?;
    let bind = if common.listen.parse::<u16>().is_ok() {
        SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), bind.port())
    } else {
        bind
    };
    let mut cfg = NodeConfig::new(bind, true);
    cfg.software = format!("walb-{role} {}", env!("CARGO_PKG_VERSION"));
    cfg.wire = common.limits.wire_config();
    let node = {
        let _g = rt.enter();
        Node::bind(cfg, files.clone()).with_context(|| {
            format!(
                "starting {me} on {bind} with certificate {}",
                files.cert.display()
            )
        })?
    };
    Ok(Ctx::with_queue(
        node,
        base,
        role,
        &id,
        common.fg,
        common.bg,
        common.queue_bounds(),
    ))
}

/// Serves calls until shutdown, then stops the role's work and closes the node.
pub async fn serve<H: Handler>(ctx: Arc<Ctx>, handler: Arc<H>) -> Result<()> {
    {
        // A weak handle: the context (and the base-directory lock) goes away with the
        // daemon, even in-process.
        let ctx = Arc::downgrade(&ctx);
        tokio::spawn(async move { watch_signals(ctx).await });
    }
    if let Err(e) = ctx.node.reload_on_sighup() {
        warn!("certificate reload on SIGHUP unavailable: {e}");
    }
    let addr = ctx.node.local_addr()?;
    info!(role = %ctx.role, id = %ctx.id, %addr, base = %ctx.base.path().display(), "serving");
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            c = ctx.node.accept() => c,
            _ = ctx.shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        if let Some(done) = common_answer(&ctx, incoming).await {
            let h = Arc::clone(&handler);
            tracker.spawn(async move { h.handle(done).await });
        }
    }
    let force = ctx.is_force_shutdown();
    info!(force, "shutting down");
    handler.shutdown(force).await;
    tracker.close();
    let wait = if force { 5 } else { 60 };
    if tokio::time::timeout(Duration::from_secs(wait), tracker.wait())
        .await
        .is_err()
    {
        warn!(
            "{} calls still running after {wait} s; closing",
            tracker.len()
        );
    }
    ctx.node.close().await;
    info!("stopped");
    Ok(())
}

/// Answers the calls every role answers alike; passes the rest back.
async fn common_answer(ctx: &Arc<Ctx>, incoming: IncomingCall) -> Option<IncomingCall> {
    let reply = match &incoming.request {
        Request::Query(Query::HostType) => Reply::HostType(ctx.role),
        Request::Query(Query::Pid) => Reply::Number(u64::from(std::process::id())),
        Request::Query(Query::Version) => Reply::Version {
            software: format!("walb-{} {}", ctx.role, env!("CARGO_PKG_VERSION")),
            protocol: walb_wire::msg::PROTOCOL_VERSION,
        },
        Request::Command(Command::Shutdown { force }) => {
            info!(peer = %incoming.peer, force, "shutdown requested");
            let force = *force;
            answer(incoming.call, Ok(Reply::Done)).await;
            ctx.begin_shutdown(force);
            return None;
        }
        _ => return Some(incoming),
    };
    answer(incoming.call, Ok(reply)).await;
    None
}

async fn watch_signals(ctx: std::sync::Weak<Ctx>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    let mut n = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        n += 1;
        info!(n, "signal received");
        let Some(ctx) = ctx.upgrade() else { return };
        ctx.begin_shutdown(n > 1);
    }
}

fn run_role<H, F, Fut>(role: Role, common: CommonOpts, start: F) -> ExitCode
where
    H: Handler,
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = Result<Arc<H>>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("walb-{role}"))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walb-{role}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = setup(role, &common, &rt).and_then(|ctx| {
        rt.block_on(async move {
            let handler = start(Arc::clone(&ctx)).await?;
            serve(ctx, handler).await
        })
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("walb-{role}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `main` of the daemon of `role`.
pub fn main_for(role: Role) -> ExitCode {
    match role {
        Role::Storage => {
            let o = StorageOpts::parse();
            run_role(role, o.common.clone(), |ctx| crate::storage::start(ctx, o))
        }
        Role::Proxy => {
            let o = ProxyOpts::parse();
            run_role(role, o.common.clone(), |ctx| crate::proxy::start(ctx, o))
        }
        Role::Archive => {
            let o = ArchiveOpts::parse();
            run_role(role, o.common.clone(), |ctx| crate::archive::start(ctx, o))
        }
        Role::Operator | Role::Viewer => {
            eprintln!("{role} is not a daemon role");
            ExitCode::FAILURE
        }
    }
}
