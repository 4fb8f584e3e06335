//! Operators' commands on many volumes at once queue for a foreground slot instead of
//! failing: six storages (one volume each) back up, hash-back-up, restore and replicate
//! through archives that run two foreground tasks at a time (`--fg 2`). Every command
//! succeeds, the ones that waited say so on stderr (stdout and `--json` stay what scripts
//! parse), the archive's status lists what waits, and a command whose `--timeout` is
//! shorter than its wait fails naming the queue, which it leaves.
//!
//! The storages read their devices at 12 MB/s (`--full-scan-bps`), so that a backup
//! holds its archive slot for seconds and the six overlap whatever the machine's speed.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use walb_tests::{last_number, sha256_file, Cluster, ClusterOpts};

/// Volumes (one per storage).
const N: usize = 6;

fn vol(i: usize) -> String {
    format!("v{i}")
}

fn storage(i: usize) -> String {
    format!("s{i}")
}

/// Starts `walb-console --exec LINE` (a line starting with `--json`: `walb-console --json
/// --exec REST`), output piped.
fn spawn(c: &Cluster, l: &[String]) -> Result<Child> {
    match l.split_first() {
        Some((first, rest)) if first == "--json" => Ok(walb_tests::bin("walb-console")
            .arg("--cluster")
            .arg(c.path().join("cluster.toml"))
            .arg("--json")
            .arg("--exec")
            .args(rest)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?),
        _ => {
            let args: Vec<&str> = l.iter().map(String::as_str).collect();
            c.exec_spawn(&args)
        }
    }
}

/// Runs each command line at once (`walb-console --exec`), waits for all, and returns
/// their outputs in order, with the time all took.
fn all_at_once(c: &Cluster, lines: &[Vec<String>]) -> Result<(Vec<Output>, Duration)> {
    let t0 = Instant::now();
    let children = lines
        .iter()
        .map(|l| spawn(c, l))
        .collect::<Result<Vec<_>>>()?;
    let outs = children
        .into_iter()
        .map(|ch| Ok(ch.wait_with_output()?))
        .collect::<Result<Vec<_>>>()?;
    Ok((outs, t0.elapsed()))
}

/// Every command succeeded; how many said they queued.
fn all_succeeded(what: &str, lines: &[Vec<String>], outs: &[Output]) -> Result<usize> {
    let mut queued = 0;
    for (l, o) in lines.iter().zip(outs) {
        let err = String::from_utf8_lossy(&o.stderr);
        ensure!(
            o.status.success(),
            "{what}: `{}` failed: {err}",
            l.join(" ")
        );
        if err.contains("queued: archive a0") || err.contains("queued: archive a1") {
            ensure!(
                err.contains("foreground tasks,") && err.contains("ahead; waiting up to"),
                "{what}: the queue line says where it stands: {err}"
            );
            queued += 1;
        }
        ensure!(
            !String::from_utf8_lossy(&o.stdout).contains("queued"),
            "{what}: queue notes go to stderr, not stdout"
        );
    }
    Ok(queued)
}

fn line(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The number in `foreground R/S running, Q queued` of `node`'s status.
fn queued_at(c: &Cluster, node: &str) -> Result<usize> {
    let out = c.exec_ok(&["status", node])?;
    let l = out
        .lines()
        .find(|l| l.starts_with("foreground "))
        .with_context(|| format!("no foreground line in the status of {node}: {out}"))?;
    l.split(", ")
        .nth(1)
        .and_then(|q| q.split(' ').next())
        .and_then(|q| q.parse().ok())
        .with_context(|| format!("unreadable foreground line {l:?}"))
}

/// Polls until `node` has a request in line (the gate for what must queue behind it).
fn until_queued(c: &Cluster, node: &str) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if queued_at(c, node)? > 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing queued at {node} within 30 s")
}

#[test]
fn commands_on_many_volumes_queue_for_a_slot() -> Result<()> {
    let c = Cluster::start(ClusterOpts {
        storages: N,
        archives: 2,
        storage_args: line(&["--fg", "2", "--full-scan-bps", "12000000"]),
        archive_args: line(&["--fg", "2"]),
        ..ClusterOpts::default()
    })?;
    let t_all = Instant::now();
    let mut devices = Vec::new();
    for i in 0..N {
        let wdev = c.wdev_path_of(i).display().to_string();
        c.exec_ok(&["init-storage", &storage(i), &vol(i), &wdev])?;
        devices.push(c.device_sha256_of(i)?);
    }

    // Six full backups at once through a0's two slots; one of them prints JSON.
    let mut lines: Vec<Vec<String>> = (0..N)
        .map(|i| line(&["full-backup", &storage(i), &vol(i), "--timeout", "300"]))
        .collect();
    lines[0].insert(0, "--json".into());
    let (outs, took) = all_at_once(&c, &lines)?;
    let queued = all_succeeded("full backups", &lines, &outs)?;
    eprintln!("6 full backups: {took:?}, {queued} queued");
    ensure!(
        queued >= 2,
        "6 backups, 2 slots: only {queued} said they queued"
    );
    let json: serde_json::Value = serde_json::from_slice(&outs[0].stdout).with_context(|| {
        format!(
            "--json stdout {:?}",
            String::from_utf8_lossy(&outs[0].stdout)
        )
    })?;
    ensure!(json.get("gid").is_some(), "--json full-backup: {json}");
    let gids: Vec<u64> = outs
        .iter()
        .skip(1)
        .map(|o| last_number(&String::from_utf8_lossy(&o.stdout)).context("no gid"))
        .collect::<Result<_>>()?;
    let mut gids_all = vec![json["gid"].as_u64().context("gid not a number")?];
    gids_all.extend(gids);

    // Six hash backups at once; while they hold a0, six restores queue behind them, and a
    // replication that will not wait that long gives up naming the queue.
    for i in 0..N {
        c.exec_ok(&["stop", &storage(i), &vol(i)])?;
    }
    let hash: Vec<Vec<String>> = (0..N)
        .map(|i| line(&["hash-backup", &storage(i), &vol(i), "--timeout", "300"]))
        .collect();
    let t0 = Instant::now();
    let hashing = hash
        .iter()
        .map(|l| spawn(&c, l))
        .collect::<Result<Vec<_>>>()?;
    if let Err(e) = until_queued(&c, "a0") {
        for ch in hashing {
            let o = ch.wait_with_output()?;
            eprintln!("hash backup: {}", String::from_utf8_lossy(&o.stderr));
        }
        return Err(e);
    }
    let impatient = c.exec(&["replicate", "a0", &vol(0), "a1", "--timeout", "1"])?;
    let err = String::from_utf8_lossy(&impatient.stderr);
    ensure!(
        !impatient.status.success(),
        "an impatient replication succeeded"
    );
    ensure!(
        err.contains("timed out") && err.contains("queue of archive a0"),
        "the timeout names the queue: {err}"
    );
    let restores: Vec<Vec<String>> = (0..N)
        .map(|i| {
            line(&[
                "restore",
                "a0",
                &vol(i),
                &gids_all[i].to_string(),
                "--timeout",
                "300",
            ])
        })
        .collect();
    let (routs, rtook) = all_at_once(&c, &restores)?;
    let houts = hashing
        .into_iter()
        .map(|ch| Ok(ch.wait_with_output()?))
        .collect::<Result<Vec<_>>>()?;
    let hqueued = all_succeeded("hash backups", &hash, &houts)?;
    let rqueued = all_succeeded("restores", &restores, &routs)?;
    eprintln!(
        "6 hash backups: {:?}, {hqueued} queued; 6 restores: {rtook:?}, {rqueued} queued",
        t0.elapsed()
    );
    ensure!(hqueued >= 2, "6 hash backups, 2 slots: {hqueued} queued");
    ensure!(
        rqueued >= 1,
        "restores started behind a full queue: {rqueued} queued"
    );
    for (i, o) in routs.iter().enumerate() {
        let path = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        let sha = sha256_file(std::path::Path::new(&path))?;
        ensure!(
            sha == devices[i],
            "the restored gid {} of {} differs from its device",
            gids_all[i],
            vol(i)
        );
    }

    // Six replications a0 → a1 at once: two slots on each end.
    let repl: Vec<Vec<String>> = (0..N)
        .map(|i| line(&["replicate", "a0", &vol(i), "a1", "--timeout", "300"]))
        .collect();
    let (outs, took) = all_at_once(&c, &repl)?;
    let pqueued = all_succeeded("replications", &repl, &outs)?;
    eprintln!("6 replications: {took:?}, {pqueued} queued");
    for i in 0..N {
        let st = c.exec_ok(&["get", "a1", "state", &vol(i)])?;
        ensure!(st.trim() == "Archived", "a1 {} is {st}", vol(i));
    }
    ensure!(queued_at(&c, "a0")? == 0, "a0's queue is empty at the end");
    ensure!(queued_at(&c, "a1")? == 0, "a1's queue is empty at the end");
    eprintln!("whole test after start: {:?}", t_all.elapsed());
    Ok(())
}
