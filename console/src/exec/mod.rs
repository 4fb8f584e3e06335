//! `walb-console --exec`: one command per call, or a script from stdin.
//!
//! - `--exec CMD ARGS...` runs one command of the table in [`commands`] and prints its
//!   [`output::Outcome`] as text (walb-tools' formats) or, with `--json`, as one JSON value.
//! - `--exec -` reads a script: one command per line, `#` comments, blank lines ignored.
//!   Every line is parsed before anything runs (a typo on line 9 does not leave lines 1-8
//!   half done); then the lines run in order and the script stops at the first failure,
//!   naming the line. With `--json`, each line prints one JSON object (JSON Lines).
//!
//! Failures go to stderr (a daemon's refusal message verbatim) and set the exit code:
//! [`EXIT_FAILED`] when a command failed, [`EXIT_USAGE`] for a bad command line, cluster
//! file or node name. With `--json`, stdout also gets an `{"error": ...}` object.
//! Long commands draw a progress bar on stderr when it is a terminal
//! ([`ExecRequest::progress`], see [`crate::progress`]); stdout never changes with it.

pub mod commands;
pub mod output;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::json;

use crate::client::{Client, ClientError, ClientOptions};
use crate::cluster::{self, Cluster};
use commands::OverviewCmd;
pub use commands::{parse_args, parse_line, ExecCmd, UsageError, COMMANDS};
pub use output::Outcome;

/// Exit code of a command that failed (refused, timed out, unreachable).
pub const EXIT_FAILED: i32 = 1;
/// Exit code of a bad command line, cluster file or node name.
pub const EXIT_USAGE: i32 = 2;

/// What `--exec` was asked.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    /// `--cluster FILE`.
    pub cluster: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// The words after `--exec` (`["-"]` for a script on stdin).
    pub args: Vec<String>,
    /// Client tunables.
    pub client: ClientOptions,
    /// Draw progress bars of long commands on stderr (see [`crate::progress::wanted`]).
    pub progress: bool,
}

/// One line of a script, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptLine {
    /// Line number, from 1.
    pub line: usize,
    /// The line as written (trimmed).
    pub text: String,
    /// The command.
    pub cmd: ExecCmd,
}

/// Parses a whole script; the first bad line is reported with its number.
pub fn parse_script(text: &str) -> Result<Vec<ScriptLine>, (usize, UsageError)> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        match parse_line(l) {
            Ok(None) => {}
            Ok(Some(cmd)) => out.push(ScriptLine {
                line: i + 1,
                text: l.trim().to_owned(),
                cmd,
            }),
            Err(e) => return Err((i + 1, e)),
        }
    }
    Ok(out)
}

fn exit_code(e: &ClientError) -> i32 {
    match e {
        ClientError::Cluster(_) => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

fn error_json(e: &ClientError, line: Option<&ScriptLine>) -> serde_json::Value {
    let mut v = json!({
        "error": e.to_string(),
        "code": e.code().map(|c| c.as_str()),
    });
    if let ClientError::Refused { node, error } = e {
        v["node"] = json!(node);
        v["message"] = json!(error.message);
    }
    if let Some(l) = line {
        v["line"] = json!(l.line);
        v["command"] = json!(l.text);
    }
    v
}

fn print_outcome(
    out: &mut dyn Write,
    o: &Outcome,
    json: bool,
    line: Option<&ScriptLine>,
) -> std::io::Result<()> {
    if json {
        let v = match line {
            Some(l) => json!({ "line": l.line, "command": l.text, "result": o.to_json() }),
            None => o.to_json(),
        };
        writeln!(out, "{v}")?;
    } else {
        for l in o.text_lines() {
            writeln!(out, "{l}")?;
        }
    }
    out.flush()
}

/// Runs `--exec`: parses, loads the cluster file if a command needs one, runs, prints.
/// Returns the process exit code.
pub async fn exec_main(
    req: ExecRequest,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    // Write failures on stdout/stderr cannot be reported anywhere better; ignore them.
    let script = req.args.len() == 1 && req.args[0] == "-";
    let lines: Vec<ScriptLine> = if script {
        let mut text = String::new();
        if let Err(e) = stdin.read_to_string(&mut text) {
            let _ = writeln!(err, "error: reading the script from stdin: {e}");
            return EXIT_USAGE;
        }
        match parse_script(&text) {
            Ok(l) => l,
            Err((n, e)) => {
                let _ = writeln!(err, "error: line {n}: {e} (nothing was run)");
                return EXIT_USAGE;
            }
        }
    } else {
        match parse_args(&req.args) {
            Ok(cmd) => vec![ScriptLine {
                line: 0,
                text: req.args.join(" "),
                cmd,
            }],
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return EXIT_USAGE;
            }
        }
    };
    let client = if lines.iter().any(|l| l.cmd.needs_cluster()) {
        let loaded = cluster::locate(req.cluster.as_deref()).and_then(|p| Cluster::load(&p));
        let cl = match loaded {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return EXIT_USAGE;
            }
        };
        match Client::new(cl, req.client.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return exit_code(&e);
            }
        }
    } else {
        None
    };
    let bar = crate::progress::Bar::default();
    let code = 'lines: {
        for l in &lines {
            let where_ = script.then_some(l);
            let result = match (&l.cmd, &client) {
                (ExecCmd::Overview(OverviewCmd::Help { command }), _) => {
                    commands::help_lines(command.as_deref())
                        .map(Outcome::Lines)
                        .map_err(|e| ClientError::State(e.to_string()))
                }
                (cmd, Some(c)) => {
                    // A daemon running its --fg tasks queues the command's heavy request: the
                    // command waits up to its --timeout, saying so on stderr (stdout stays
                    // what scripts parse).
                    let wait = cmd.timeout().unwrap_or(req.client.request_timeout);
                    let c = c.with_queue_patience(wait, Some(queue_report(bar.clone())));
                    if req.progress {
                        let watches = crate::progress::watches(cmd, c.cluster());
                        bar.start(&c, l.text.clone(), watches).await;
                    }
                    let r = cmd.run(&c).await;
                    bar.finish();
                    r
                }
                (_, None) => Err(ClientError::State("no cluster loaded".into())),
            };
            match result {
                Ok(o) => {
                    let _ = print_outcome(out, &o, req.json, where_);
                }
                Err(e) => {
                    if req.json {
                        let _ = writeln!(out, "{}", error_json(&e, where_));
                        let _ = out.flush();
                    }
                    let _ = match where_ {
                        Some(l) => writeln!(err, "error: line {} ({}): {e}", l.line, l.text),
                        None => writeln!(err, "error: {e}"),
                    };
                    break 'lines exit_code(&e);
                }
            }
        }
        0
    };
    if let Some(c) = &client {
        // Tell the daemons the connections are over (else each lingers there until its
        // idle timeout, counted against the operator's connections).
        c.close().await;
    }
    code
}

/// Prints where a queued request stands on stderr, once per change of place:
/// `queued: storage s0 runs 2 of 2 foreground tasks, 1 ahead; waiting up to 600 s`
/// (the queue may be another daemon's than the one asked: a storage waiting for its
/// archive passes the archive's notes on). A progress bar drawn meanwhile stays below.
fn queue_report(bar: crate::progress::Bar) -> crate::client::QueueReport {
    let last = std::sync::Mutex::new(None::<(String, u32, u32)>);
    std::sync::Arc::new(move |node: &str, n: &walb_wire::msg::QueueNote, wait| {
        let now = (n.queue.clone(), n.ahead, n.running);
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() != Some(&now) {
            bar.println(&queue_line(node, n, wait));
            *last = Some(now);
        }
    })
}

/// The stderr line of a queued request.
pub fn queue_line(node: &str, n: &walb_wire::msg::QueueNote, wait: std::time::Duration) -> String {
    let via = if n.queue.ends_with(&format!(" {node}")) {
        String::new()
    } else {
        format!(" (for {node})")
    };
    format!(
        "queued: {}{via} runs {} of {} foreground tasks, {} ahead; waiting up to {} s",
        n.queue,
        n.running,
        n.slots,
        n.ahead,
        wait.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_parsed_whole_with_line_numbers() {
        let text = "# setup\n\nstate-all vol\n  snapshot s0 vol a0  # take one\n";
        let l = parse_script(text).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].line, l[0].text.as_str()), (3, "state-all vol"));
        assert_eq!(l[1].line, 4);
        let (n, e) = parse_script("state-all vol\nrestore a0 vol\nstate-all vol\n").unwrap_err();
        assert_eq!(n, 2);
        assert!(e.to_string().contains("missing GID"), "{e}");
    }

    #[tokio::test]
    async fn usage_errors_exit_2_before_any_cluster_file_is_read() {
        let req = ExecRequest {
            cluster: Some("/nonexistent/cluster.toml".into()),
            args: vec!["restore".into(), "a0".into()],
            ..ExecRequest::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = exec_main(req, &mut std::io::empty(), &mut out, &mut err).await;
        assert_eq!(code, EXIT_USAGE);
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with("error: restore: missing VOL"), "{err}");
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn help_needs_no_cluster_and_a_missing_cluster_file_is_named() {
        let req = ExecRequest {
            cluster: Some("/nonexistent/cluster.toml".into()),
            args: vec!["help".into()],
            ..ExecRequest::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            exec_main(req.clone(), &mut std::io::empty(), &mut out, &mut err).await,
            0
        );
        assert!(String::from_utf8(out).unwrap().contains("full-backup"));
        let req = ExecRequest {
            args: vec!["state-all".into(), "vol".into()],
            ..req
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = exec_main(req, &mut std::io::empty(), &mut out, &mut err).await;
        assert_eq!(code, EXIT_USAGE);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("/nonexistent/cluster.toml"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_script_line_runs_nothing() {
        let req = ExecRequest {
            cluster: Some("/nonexistent/cluster.toml".into()),
            args: vec!["-".into()],
            ..ExecRequest::default()
        };
        let mut script = "help\nhelp nope x\n".as_bytes();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = exec_main(req, &mut script, &mut out, &mut err).await;
        assert_eq!(code, EXIT_USAGE);
        assert!(out.is_empty(), "nothing ran");
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("line 2"), "{err}");
    }
}
