//! The storage's ts-delta: every interval it gathers its primary archive's latest
//! snapshot of each Target volume and `get ts-delta` compares it with its own; an archive
//! that stops answering leaves the last answer, whose age grows, and blocks nothing else.

mod storage_support;

use std::time::{Duration, Instant};

use storage_support::*;
use walb_kernel::block::Pbs;
use walb_wire::msg::{Command, Query, Reply, TsDeltaRow};

async fn ts_delta(op: &Op) -> Vec<String> {
    match op.query(Query::TsDelta).await {
        Ok(Reply::TsDelta(rows)) => rows.iter().map(TsDeltaRow::line).collect(),
        other => panic!("ts-delta answered {other:?}"),
    }
}

/// The value of `key` in an LTSV line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split('\t')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix(':'))
}

/// The storage's latest snapshot of `vol`: gid and timestamp.
async fn latest(op: &Op, vol: &str) -> (u64, u64) {
    match op
        .query(Query::LatestSnap {
            vol: Some(vol.into()),
        })
        .await
    {
        Ok(Reply::Snapshots(s)) if s.len() == 1 => {
            (s[0].gid.expect("a valid latest snapshot"), s[0].timestamp_s)
        }
        other => panic!("latest-snap answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_delta_follows_the_archive_and_keeps_the_last_answer_when_it_hangs() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    for dev in ["e0", "e1"] {
        let files = format_device(tmp.path(), dev, Pbs::B4096, 4 << 20, 2 << 20);
        devs.add(dev, open_emu(&files, dev));
    }
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    op.init("v0", "e0").await;
    op.init("v1", "e1").await;
    // Nothing is Target yet: no line, no gather.
    assert_eq!(ts_delta(&op).await, Vec::<String>::new());
    full_backup(&op, &archive, "v0").await;
    let gid = match op.cmd(Command::Snapshot { vol: "v0".into() }).await {
        Ok(Reply::Gid(g)) => g,
        other => panic!("snapshot answered {other:?}"),
    };
    let (sgid, sts) = latest(&op, "v0").await;
    assert!(sgid >= gid, "latest {sgid} before the snapshot {gid}");
    // The archive is 40 s and a few gids behind.
    let behind = sgid.saturating_sub(3);
    archive
        .latest
        .lock()
        .unwrap()
        .insert("v0".into(), (behind, sts - 40));

    let t0 = Instant::now();
    let line = loop {
        let lines = ts_delta(&op).await;
        assert!(lines.len() <= 1, "only v0 is Target: {lines:?}");
        if let Some(l) = lines
            .into_iter()
            .find(|l| field(l, "dest_gid") == Some(behind.to_string().as_str()))
        {
            break l;
        }
        assert!(t0.elapsed() < LIMIT, "the archive's answer never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(field(&line, "name"), Some("v0"));
    assert_eq!(field(&line, "dest"), Some("a0"));
    assert_eq!(field(&line, "kind"), Some("storage"));
    assert_eq!(field(&line, "dest_kind"), Some("archive"));
    let (sgid, _) = latest(&op, "v0").await;
    assert_eq!(field(&line, "gid"), Some(sgid.to_string().as_str()));
    assert_eq!(field(&line, "ts_delta"), Some("40"), "{line}");
    let age: u64 = field(&line, "age").unwrap().parse().unwrap();
    assert!(age <= 2, "a fresh answer is {age} s old: {line}");
    // Only Target volumes are asked about.
    let asked = archive.gathers.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|v| v == &["v0".to_owned()]), "{asked:?}");

    // The archive catches up; the next gather says so.
    archive
        .latest
        .lock()
        .unwrap()
        .insert("v0".into(), (sgid, sts));
    let t0 = Instant::now();
    loop {
        let lines = ts_delta(&op).await;
        if lines
            .iter()
            .any(|l| field(l, "dest_gid") == Some(sgid.to_string().as_str()))
        {
            break;
        }
        assert!(t0.elapsed() < LIMIT, "the catch-up never showed: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The archive hangs: the last answer stays, its age grows, and the storage keeps
    // answering and taking snapshots meanwhile.
    *archive.gather_delay.lock().unwrap() = Duration::from_secs(60);
    archive
        .latest
        .lock()
        .unwrap()
        .insert("v0".into(), (sgid + 100, sts));
    let n = archive.gathers.lock().unwrap().len();
    wait_for("a gather to hang", || {
        archive.gathers.lock().unwrap().len() > n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let t = Instant::now();
    let g2 = match op.cmd(Command::Snapshot { vol: "v0".into() }).await {
        Ok(Reply::Gid(g)) => g,
        other => panic!("snapshot answered {other:?}"),
    };
    let lines = ts_delta(&op).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a hung gather slowed the storage: {:?}",
        t.elapsed()
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(field(l, "dest_gid"), Some(sgid.to_string().as_str()), "{l}");
    let now_gid: u64 = field(l, "gid").unwrap().parse().unwrap();
    assert!(
        now_gid >= g2,
        "the storage's side is not its latest snapshot: {l}"
    );
    let age: u64 = field(l, "age").unwrap().parse().unwrap();
    assert!(age >= 2, "the kept answer's age does not grow: {l}");
}
