//! The `walb-console` binary: the terminal UI (or a status dump when stdout is not a
//! terminal), `ca`, `lab` and `--exec`.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use walb_console::cli::{CaCommand, Cli, Command, LabCommand};
use walb_console::client::{Client, ClientOptions};
use walb_console::cluster::{self, Cluster};
use walb_console::exec::{exec_main, ExecRequest};
use walb_console::tui::app::{load_snapshot, no_color, TuiConfig};
use walb_console::{ca, lab, tui};

fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if debug { "debug" } else { "warn" };
    let filter = EnvFilter::try_from_env("WALB_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("{default},quinn=warn,quinn_proto=warn,rustls=warn"))
    });
    // Colours only on a terminal: a log piped to a file or a script stays plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logging while the terminal UI runs: to `--log FILE` or nowhere, never the terminal.
fn init_file_logging(path: Option<&std::path::Path>, debug: bool) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let Some(path) = path else { return Ok(()) };
    let file = walb_wire::files::open_append(path, walb_wire::files::MODE_PRIVATE)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("WALB_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("{default},quinn=warn,quinn_proto=warn,rustls=warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// Options of the console's connections for the terminal UI and the dump.
fn tui_client_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    }
}

/// `walb-console` without a command: the terminal UI, or one status dump when stdout is
/// not a terminal.
fn tui_main(cli: &Cli) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    if tty {
        init_file_logging(cli.log.as_deref(), cli.debug)?;
    } else {
        init_logging(cli.debug);
    }
    let path = cluster::locate(cli.cluster.as_deref())?;
    let cl = Cluster::load(&path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let client = Client::new(cl, tui_client_options())?;
        if !tty {
            let m = load_snapshot(&client, Duration::from_secs(2)).await;
            let mut out = std::io::stdout().lock();
            for l in tui::dump::lines(&m) {
                writeln!(out, "{l}")?;
            }
            client.close().await;
            return Ok(());
        }
        let cfg = TuiConfig {
            read_only: cli.read_only.then(|| "--read-only".to_owned()),
            plain: no_color(),
        };
        tui::app::run(client.clone(), cfg).await?;
        client.close().await;
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.exec.is_none() && cli.command.is_none() {
        return match tui_main(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(cli.debug);
    if let Some(args) = cli.exec {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let req = ExecRequest {
            cluster: cli.cluster,
            json: cli.json,
            args,
            progress: walb_console::progress::wanted(std::io::stderr().is_terminal(), cli.quiet),
            ..ExecRequest::default()
        };
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        let code = rt.block_on(exec_main(req, &mut input, &mut out, &mut err));
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Option<Command>) -> Result<()> {
    let Some(command) = command else {
        anyhow::bail!("nothing to do: try `walb-console --exec help` or --help");
    };
    match command {
        Command::Ca(CaCommand::Init {
            ca_dir,
            name,
            days,
            force,
        }) => {
            let dir = ca::ca_dir(ca_dir)?;
            let cert = ca::init(&dir, &name, days, force)?;
            println!("CA certificate: {}", cert.display());
            println!(
                "CA key:         {}",
                dir.join(walb_wire::certs::CA_KEY_FILE).display()
            );
        }
        Command::Ca(CaCommand::Issue {
            role,
            id,
            hosts,
            ca_dir,
            out,
            days,
            force,
        }) => {
            let dir = ca::ca_dir(ca_dir)?;
            let out = out.unwrap_or_else(|| dir.clone());
            let req = ca::IssueRequest {
                role,
                id,
                hosts,
                days,
                force,
            };
            let files = ca::issue(&dir, &out, &req)?;
            println!("certificate: {}", files.cert.display());
            println!("key:         {}", files.key.display());
            println!("CA:          {}", files.ca_cert.display());
            println!("serial:      {}", ca::serial_of(&files.cert)?.colons());
        }
        Command::Ca(CaCommand::Revoke {
            id,
            serial,
            ca_dir,
            out_dirs,
        }) => {
            let dir = ca::ca_dir(ca_dir)?;
            let entry = ca::revoke_entry(id.as_deref(), serial.as_deref())?;
            let r = ca::revoke(&dir, entry, &out_dirs)?;
            if r.already {
                println!("already revoked: {}", r.entry);
            } else {
                println!("revoked: {}", r.entry);
            }
            for p in &r.written {
                println!("deny list:   {}", p.display());
            }
            println!("daemons apply it at start and on SIGHUP");
        }
        Command::Lab(args) => {
            let layout = lab::LabLayout::new(args.dir)?;
            let bin_dir = match &args.bin_dir {
                Some(d) => Some(
                    std::path::absolute(d).with_context(|| format!("--bin-dir {}", d.display()))?,
                ),
                None => None,
            };
            let rt = runtime()?;
            let mut out = std::io::stdout();
            match args.command {
                LabCommand::Up(a) => {
                    let req = lab::UpRequest {
                        config: lab::LabConfig {
                            port_base: a.port_base,
                            vol: a.vol,
                            device: a.device,
                            size_mb: a.size_mb,
                            log_mb: a.log_mb.unwrap_or_else(|| lab::log_mb_for(a.size_mb)),
                            no_block: a.no_block,
                            driver: a.driver,
                            ldev: a.ldev.map(std::path::absolute).transpose()?,
                            ddev: a.ddev.map(std::path::absolute).transpose()?,
                            bin_dir: bin_dir.clone(),
                            ..lab::LabConfig::default()
                        },
                        no_backup: a.no_backup,
                        timeout: Duration::from_secs(a.timeout),
                    };
                    rt.block_on(lab::up(&layout, &req, &mut out))?;
                }
                LabCommand::Status => {
                    rt.block_on(lab::status(&layout, bin_dir.as_deref(), &mut out))?
                }
                LabCommand::Down { timeout, purge } => rt.block_on(lab::down(
                    &layout,
                    bin_dir.as_deref(),
                    Duration::from_secs(timeout),
                    purge,
                    &mut out,
                ))?,
                LabCommand::Stop { node, timeout } => {
                    let m = rt.block_on(lab::stop_node(
                        &layout,
                        &node,
                        false,
                        Duration::from_secs(timeout),
                    ))?;
                    writeln!(out, "{m}")?;
                }
                LabCommand::Kill { node } => {
                    let m = rt.block_on(lab::stop_node(
                        &layout,
                        &node,
                        true,
                        Duration::from_secs(10),
                    ))?;
                    writeln!(out, "{m}")?;
                }
                LabCommand::Start { node } => {
                    let m = rt.block_on(lab::start_node(&layout, &node, bin_dir.as_deref()))?;
                    writeln!(out, "{m}")?;
                }
                LabCommand::AddNode { role, name } => {
                    let lines = rt.block_on(lab::add::add_node(
                        &layout,
                        &role,
                        &name,
                        bin_dir.as_deref(),
                    ))?;
                    for l in lines {
                        writeln!(out, "{l}")?;
                    }
                }
            }
        }
    }
    Ok(())
}
