//! Restored images on real storage: the reflink clone on a loop-mounted XFS or btrfs, and
//! loop-device attachment with `--restore-loop`. Both need root (and mkfs.xfs or
//! mkfs.btrfs for the first); without root they print why they skip, without the tools
//! they fail naming the package (see `tests/src/tools.rs`).

mod archive_support;
#[path = "../../tests/src/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command as Proc;

use archive_support::*;
use walb_daemon::archive::backend::{self, CloneMethod};
use walb_kernel::wdiff::WdiffKind;
use walb_wire::{Command, ErrorCode, Reply, Role};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x77; 16];
const T0: u64 = 1_700_000_000;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn have(tool: &str) -> bool {
    Proc::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A file system in a sparse file, loop-mounted; unmounted when dropped.
struct Mounted {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
    fs: &'static str,
}

impl Mounted {
    fn new() -> Result<Mounted, String> {
        if !is_root() {
            return Err("not root".into());
        }
        // XFS (what CI installs) unless only btrfs is at hand.
        let (fs, mkfs): (&'static str, Vec<&str>) = if have("mkfs.btrfs") && !have("mkfs.xfs") {
            ("btrfs", vec!["mkfs.btrfs", "-q", "-f"])
        } else if tools::require(
            "restore_clones_the_base_by_reflink_on_xfs_or_btrfs (or mkfs.btrfs)",
            &["mkfs.xfs", "mount", "umount"],
        ) {
            ("xfs", vec!["mkfs.xfs", "-q", "-f", "-m", "reflink=1"])
        } else {
            return Err("neither mkfs.xfs nor mkfs.btrfs is installed".into());
        };
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("fs.img");
        let f = std::fs::File::create(&img).map_err(|e| e.to_string())?;
        f.set_len(512 << 20).map_err(|e| e.to_string())?;
        drop(f);
        let out = Proc::new(mkfs[0])
            .args(&mkfs[1..])
            .arg(&img)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                mkfs[0],
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let out = Proc::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mount -o loop: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mounted { _dir: dir, mnt, fs })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for _ in 0..50 {
            match Proc::new("umount").arg(&self.mnt).status() {
                Ok(s) if s.success() => return,
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        let _ = Proc::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Detaches every loop device still attached to a file under `dir` (test cleanup).
struct LoopSweep(PathBuf);

impl Drop for LoopSweep {
    fn drop(&mut self) {
        let restored = self.0.join(VOL).join("restored");
        for e in std::fs::read_dir(&restored).into_iter().flatten().flatten() {
            for dev in backend::loop_devices_of(&e.path()) {
                let _ = backend::detach_loop(&dev);
            }
        }
    }
}

async fn populate(c: &Cluster, a: &TestArchive, img: &[u8], w: &[Vec<u8>]) {
    let nodes = [c.client(Role::Storage, "s0"), c.client(Role::Proxy, "p0")];
    let st = nodes[0].connect(a.addr).await.unwrap();
    let px = nodes[1].connect(a.addr).await.unwrap();
    let size_lb = (img.len() / LB) as u64;
    full_backup(&st, VOL, img, 128, UUID, 2, T0).await.unwrap();
    for (i, (b, e, m)) in [(0, 1, false), (1, 3, false)].into_iter().enumerate() {
        send_wdiff(
            &px,
            VOL,
            UUID,
            size_lb,
            diff_dto(b, e, m, T0 + i as u64),
            &w[i],
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_clones_the_base_by_reflink_on_xfs_or_btrfs() {
    let m = match Mounted::new() {
        Ok(m) => m,
        Err(why) => {
            println!("SKIP restore_clones_the_base_by_reflink_on_xfs_or_btrfs: {why}");
            return;
        }
    };
    // The kernel primitive first.
    let src_p = m.mnt.join("src");
    std::fs::write(&src_p, vec![5u8; 1 << 20]).unwrap();
    let src = std::fs::File::open(&src_p).unwrap();
    let (_, how) = backend::clone_file(&src, &m.mnt.join("dst")).unwrap();
    assert_eq!(how, CloneMethod::Reflink, "FICLONE on {}", m.fs);

    let c = Cluster::new("reflink");
    let base = m.mnt.join("archive");
    let a = TestArchive::start(&c, opts(&base)).await;
    let node = c.client(Role::Operator, "op");
    let op = node.connect(a.addr).await.unwrap();
    let size_lb = 32768u64;
    let img = make_image(size_lb, 128, 3, 11);
    let w: Vec<Vec<u8>> = (0..2)
        .map(|i| make_wdiff(size_lb, 1 << 20, 40 + i, WdiffKind::Indexed))
        .collect();
    init_vol(&op, VOL).await;
    populate(&c, &a, &img, &w).await;

    let p = restore(&op, VOL, 3).await;
    let st = status(&op, VOL).await;
    assert!(
        st.iter()
            .any(|l| l.starts_with("restored:3 ") && l.ends_with("(reflink)")),
        "{} should clone by reflink: {st:?}",
        m.fs
    );
    assert!(std::fs::read(&p).unwrap() == apply_all(&img, &[&w[0], &w[1]]));
    // Copy-on-write: the base image did not change under the restored one.
    assert!(std::fs::read(a.vol_dir(VOL).join("base.img")).unwrap() == img);
    assert_eq!(
        cmd(
            &op,
            Command::DelRestored {
                vol: VOL.into(),
                gid: 3
            }
        )
        .await
        .unwrap(),
        Reply::Done
    );
    assert!(!p.exists());
    a.stop().await;
}

fn loop_usable() -> Result<(), String> {
    if !is_root() {
        return Err("not root".into());
    }
    if !tools::require("the --restore-loop tests", &["losetup", "mount", "umount"]) {
        return Err("losetup is not installed".into());
    }
    let out = Proc::new("losetup")
        .arg("-f")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "no free loop device: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Backing files of attached loop devices that lie under `dir`.
fn attached_under(dir: &Path) -> Vec<String> {
    let out = Proc::new("losetup")
        .args(["-l", "-n", "-O", "BACK-FILE"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with(&*dir.to_string_lossy()))
        .collect()
}

fn read_dev(p: &Path, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::with_capacity(len);
    std::fs::File::open(p)
        .unwrap()
        .take(len as u64)
        .read_to_end(&mut v)
        .unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_loop_attaches_restored_images_and_del_restored_detaches_them() {
    if let Err(why) = loop_usable() {
        println!(
            "SKIP restore_loop_attaches_restored_images_and_del_restored_detaches_them: {why}"
        );
        return;
    }
    let c = Cluster::new("loop");
    let base = tempfile::tempdir().unwrap();
    let _sweep = LoopSweep(base.path().to_path_buf());
    let mut o = opts(base.path());
    o.restore_loop = true;
    let a = TestArchive::start(&c, o).await;
    let node = c.client(Role::Operator, "op");
    let op = node.connect(a.addr).await.unwrap();
    let size_lb = 8192u64;
    let img = make_image(size_lb, 128, 3, 12);
    let w: Vec<Vec<u8>> = (0..2)
        .map(|i| make_wdiff(size_lb, 512 << 10, 50 + i, WdiffKind::Sorted))
        .collect();
    init_vol(&op, VOL).await;
    populate(&c, &a, &img, &w).await;

    let dev = restore(&op, VOL, 3).await;
    assert!(
        dev.to_string_lossy().starts_with("/dev/loop"),
        "restored path {} is not a loop device",
        dev.display()
    );
    let file = a.vol_dir(VOL).join("restored/3.img");
    assert_eq!(backend::loop_devices_of(&file), vec![dev.clone()]);
    let want = apply_all(&img, &[&w[0], &w[1]]);
    assert!(
        read_dev(&dev, want.len()) == want,
        "loop device content differs"
    );

    assert_eq!(
        cmd(
            &op,
            Command::DelRestored {
                vol: VOL.into(),
                gid: 3
            }
        )
        .await
        .unwrap(),
        Reply::Done
    );
    assert!(
        backend::loop_devices_of(&file).is_empty(),
        "loop device left attached"
    );
    assert!(attached_under(base.path()).is_empty());
    assert!(!file.exists());
    let err = cmd(
        &op,
        Command::DelRestored {
            vol: VOL.into(),
            gid: 3,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), ErrorCode::NotFound);

    // clear-vol detaches what is still attached.
    let dev2 = restore(&op, VOL, 3).await;
    assert!(dev2.to_string_lossy().starts_with("/dev/loop"));
    assert_eq!(attached_under(base.path()).len(), 1);
    let r = cmd(
        &op,
        Command::Stop {
            vol: VOL.into(),
            mode: walb_wire::msg::StopMode::Graceful,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Accepted);
    wait_state(&op, VOL, "Stopped").await;
    cmd(&op, Command::ClearVol { vol: VOL.into() })
        .await
        .unwrap();
    assert!(
        attached_under(base.path()).is_empty(),
        "{:?}",
        attached_under(base.path())
    );
    a.stop().await;
}
