//! The `walb-archive` binary killed (SIGKILL) in the middle of a restore and started
//! again on the same base directory: no temporary file is left, the volume is Archived
//! with its diffs, nothing is listed as restored, and the restore then succeeds.

mod archive_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use archive_support::*;
use walb_kernel::wdiff::WdiffKind;
use walb_wire::{Command, Reply};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x42; 16];
const T0: u64 = 1_700_000_000;

/// A daemon process, killed when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(c: &Cluster, base: &Path, log: &Path, extra: &[&str]) -> Daemon {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let logf = std::fs::File::create(log).unwrap();
        let child = Proc::new(env!("CARGO_BIN_EXE_walb-archive"))
            .arg("--base-dir")
            .arg(base)
            .args([
                "--listen",
                &addr.to_string(),
                "--id",
                "a0",
                "--fsync-interval-mb",
                "1",
            ])
            .arg("--cert-dir")
            .arg(c.cert_dir())
            .args(extra)
            .env("WALB_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("serving")
        {
            assert!(
                t0.elapsed() < LIMIT,
                "daemon did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, addr }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_kill_mid_restore_leaves_no_temp_file_and_a_consistent_volume() {
    let c = Cluster::new("restart");
    let base = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let size_lb = 32768u64;
    let img = make_image(size_lb, 128, 4, 21);
    let w: Vec<Vec<u8>> = (0..3)
        .map(|i| make_wdiff(size_lb, 3 << 20, 60 + i, WdiffKind::Indexed))
        .collect();
    let all: Vec<&[u8]> = w.iter().map(|v| &v[..]).collect();
    let want = apply_all(&img, &all);

    // A slow restore: it sleeps 95% of the time.
    let d = Daemon::start(
        &c,
        base.path(),
        &logs.path().join("1.log"),
        &["--apply-sleep-pct", "95"],
    );
    let Peers { nodes, op, st, px } = connect_all(&c, d.addr).await;
    init_vol(&op, VOL).await;
    full_backup(&st, VOL, &img, 128, UUID, 2, T0).await.unwrap();
    for (i, (b, e)) in [(0u64, 1u64), (1, 3), (3, 5)].into_iter().enumerate() {
        send_wdiff(
            &px,
            VOL,
            UUID,
            size_lb,
            diff_dto(b, e, false, T0 + i as u64),
            &w[i],
        )
        .await
        .unwrap();
    }
    let r = cmd(
        &op,
        Command::Restore {
            vol: VOL.into(),
            gid: 5,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Accepted);
    let restored_dir = base.path().join(VOL).join("restored");
    let tmp: PathBuf = restored_dir.join("5.img.tmp");
    let t0 = Instant::now();
    while !tmp.exists() {
        assert!(t0.elapsed() < LIMIT, "the restore never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    d.kill();
    assert!(tmp.exists(), "the kill came after the restore finished");
    assert!(!restored_dir.join("5.img").exists());

    // Start again: the unfinished image is gone, the volume is whole.
    let d = Daemon::start(&c, base.path(), &logs.path().join("2.log"), &[]);
    let op = nodes[0].connect(d.addr).await.unwrap();
    assert!(
        temp_files(base.path()).is_empty(),
        "{:?}",
        temp_files(base.path())
    );
    assert_eq!(state(&op, VOL).await, "Archived");
    assert!(restored(&op, VOL).await.is_empty());
    assert_eq!(diffs(&op, VOL).await.len(), 3);
    assert_eq!(
        restorable(&op, VOL, false)
            .await
            .iter()
            .map(|s| s.gid)
            .collect::<Vec<_>>(),
        vec![Some(3), Some(5)]
    );
    let p = restore(&op, VOL, 5).await;
    assert!(std::fs::read(&p).unwrap() == want, "restored image differs");
    assert!(temp_files(base.path()).is_empty());
    d.kill();
}
