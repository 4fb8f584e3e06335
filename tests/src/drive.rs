//! What tests do with a running [`Cluster`], as operators do: write through the device,
//! take snapshots, restore and hash images, read states, run background writers, and
//! reach the daemons through the wire library ([`Cluster::operator`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::Child;

use crate::{
    last_number, proc_cpu_seconds, sha256_file, smallfs, wait_until, Cluster, Operator, VOL,
};
use anyhow::{bail, Context, Result};
use walb_wire::{ClusterCa, IssueOptions, PeerId, Role};

impl Cluster {
    /// SHA-256 of the live device (root: through its block device).
    pub fn device_sha256(&self) -> Result<String> {
        self.device_sha256_of(0)
    }

    /// SHA-256 of the live device of storage `i`.
    pub fn device_sha256_of(&self, i: usize) -> Result<String> {
        let p = self.wdev_path_of(i);
        if !p.exists() {
            bail!("the device has no block device here (needs root)");
        }
        sha256_file(&p)
    }

    /// Restores `gid` on `archive`, hashes the restored image, deletes it.
    pub fn restored_sha256(&self, archive: &str, gid: u64) -> Result<String> {
        self.restored_sha256_vol(archive, VOL, gid)
    }

    /// [`Cluster::restored_sha256`] of volume `vol`.
    pub fn restored_sha256_vol(&self, archive: &str, vol: &str, gid: u64) -> Result<String> {
        let g = gid.to_string();
        self.exec_ok(&["restore", archive, vol, &g])?;
        let path = self.exec_ok(&["restored-path", archive, vol, &g])?;
        let path = PathBuf::from(path.trim());
        let sha = sha256_file(&path)?;
        self.exec_ok(&["del-restored", archive, vol, &g])?;
        Ok(sha)
    }

    /// Takes a snapshot that must become restorable on a0; returns its gid.
    pub fn snapshot(&self) -> Result<u64> {
        self.snapshot_at(&["a0"])
    }

    /// Takes a snapshot that must become restorable on each of `archives`; returns its
    /// gid.
    pub fn snapshot_at(&self, archives: &[&str]) -> Result<u64> {
        self.snapshot_vol("s0", VOL, archives)
    }

    /// Takes a snapshot of `vol` on `storage` that must become restorable on each of
    /// `archives`; returns its gid.
    pub fn snapshot_vol(&self, storage: &str, vol: &str, archives: &[&str]) -> Result<u64> {
        let mut args = vec!["snapshot", storage, vol, "--timeout", "120"];
        args.extend(archives);
        let out = self.exec_ok(&args)?;
        last_number(&out).with_context(|| format!("no gid in {out:?}"))
    }

    /// `restorable ARCHIVE vol`: its lines (gid, time, explicit).
    pub fn restorable_lines(&self, archive: &str) -> Result<Vec<String>> {
        Ok(self
            .exec_ok(&["restorable", archive, VOL])?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// The gids `archive` lists as restorable (explicit snapshots).
    pub fn restorable_gids(&self, archive: &str) -> Result<Vec<u64>> {
        self.restorable_gids_vol(archive, VOL)
    }

    /// The gids `archive` lists as restorable for `vol` (explicit snapshots).
    pub fn restorable_gids_vol(&self, archive: &str, vol: &str) -> Result<Vec<u64>> {
        Ok(self
            .exec_ok(&["restorable", archive, vol])?
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect())
    }

    /// The device equals the restored image of `gid` at a0.
    pub fn assert_restore_equals_device(&self, gid: u64) -> Result<()> {
        let dev = self.device_sha256()?;
        let img = self.restored_sha256("a0", gid)?;
        if dev != img {
            bail!("restored gid {gid} differs from the device: {img} != {dev}");
        }
        Ok(())
    }

    /// `init-storage` and a full backup, as the tutorial does; returns the gid the
    /// backup is clean at.
    pub fn init_and_full_backup(&self) -> Result<u64> {
        let wdev = self.wdev_path().display().to_string();
        self.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
        self.exec_ok(&["stop", "s0", VOL])?;
        let out = self.exec_ok(&["full-backup", "s0", VOL])?;
        last_number(&out).with_context(|| format!("no gid in {out:?}"))
    }

    /// Writes `count` random IOs of up to `max_io` through the device, flushing every
    /// 50 ms, and waits for them.
    pub fn write(&self, count: u64, max_io: &str, seed: u64) -> Result<()> {
        self.write_on(0, count, max_io, seed)
    }

    /// [`Cluster::write`] on device `i`.
    pub fn write_on(&self, i: usize, count: u64, max_io: &str, seed: u64) -> Result<()> {
        let mut w = self.workload_on(
            i,
            &[
                "--count",
                &count.to_string(),
                "--max-io",
                max_io,
                "--flush-interval",
                "50",
                "--seed",
                &seed.to_string(),
            ],
        )?;
        let st = w.wait()?;
        if !st.success() {
            let mut err = String::new();
            if let Some(mut e) = w.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("wdevc workload failed ({st}): {err}");
        }
        Ok(())
    }

    /// The state line of `node` in `state-all`.
    pub fn state(&self, node: &str) -> Result<String> {
        self.state_of(node, VOL)
    }

    /// The state of `vol` on `node`.
    pub fn state_of(&self, node: &str, vol: &str) -> Result<String> {
        let out = self.exec_ok(&["get", node, "state", vol])?;
        Ok(out.trim().to_owned())
    }

    /// Waits (30 s at most) until `node` shows the steady state `want` for the volume: a
    /// transfer in flight shows its temporary state (WlogRecv at a proxy, WdiffRecv at an
    /// archive) for a moment, on a busy machine for a while.
    pub fn expect_state(&self, node: &str, want: &str) -> Result<()> {
        let mut st = String::new();
        wait_until(30, &format!("{node} {want}"), || {
            st = self.state(node)?;
            Ok(st == want)
        })
        .with_context(|| format!("{node} is {st}"))
    }

    /// walblib's `go_standby` (`go-standby`): from Target, `storage` stops `vol` (force),
    /// its primary archive stops being synchronized, its log is reset and it starts
    /// Standby; it must end Standby.
    pub fn go_standby(&self, storage: &str, vol: &str) -> Result<()> {
        self.exec_ok(&["go-standby", storage, vol])?;
        let st = self.state_of(storage, vol)?;
        if st != "Standby" {
            bail!("{storage} {vol} is {st} after go-standby");
        }
        Ok(())
    }

    /// Whether every serving proxy sends `vol` to `archive` (`is-synchronizing`).
    pub fn is_synchronizing(&self, archive: &str, vol: &str) -> Result<bool> {
        let out = self.exec_ok(&["is-synchronizing", archive, vol])?;
        match out.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            other => bail!("is-synchronizing printed {other:?}"),
        }
    }

    /// Starts a background writer on device `i` as walb-tools' `RandomWriter`: one
    /// random 512-byte block every 50 ms, each flushed, until [`Writer::stop`].
    pub fn writer(&self, i: usize, seed: u64) -> Result<Writer> {
        let child = self.workload_on(
            i,
            &[
                "--rate",
                "20",
                "--min-io",
                "512",
                "--max-io",
                "512",
                "--flush-interval",
                "50",
                "--duration",
                "86400",
                "--seed",
                &seed.to_string(),
            ],
        )?;
        Ok(Writer {
            child: Some(child),
            dev: self.wdev_path_of(i),
        })
    }
}

/// A background writer ([`Cluster::writer`]); killed if dropped unstopped.
#[derive(Debug)]
pub struct Writer {
    child: Option<Child>,
    /// The device it writes to.
    dev: PathBuf,
}

impl Writer {
    /// Stops the writer and flushes the device (fsync of its block device, as root);
    /// fails if the writer had failed on its own (a write refused by the device). Every
    /// write it had acknowledged is on the device and permanent afterwards.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if let Some(st) = c.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("the background writer ended on its own ({st}): {err}");
        }
        let _ = c.kill();
        c.wait()?;
        if self.dev.is_absolute() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.dev)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("flushing {}", self.dev.display()))?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// The data device's file (the emulated device's data lives there).
    pub fn ddev_path(&self) -> PathBuf {
        self.path().join("ddev")
    }

    /// CPU seconds (user + system) used so far by each daemon and by the emulated
    /// device's process (`dev`).
    pub fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        self.pids()
            .into_iter()
            .filter_map(|(n, pid)| proc_cpu_seconds(pid).map(|s| (n, s)))
            .collect()
    }

    /// Process ids of the running daemons and of the emulated device's process (`dev`).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = self
            .daemons
            .iter()
            .filter_map(|(n, d)| d.child.as_ref().map(|c| (n.clone(), c.id())))
            .collect();
        let pidf = self.path().join("emu").join(format!("{}.pid", self.wdev));
        if let Some(p) = std::fs::read_to_string(pidf)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            pids.push(("dev".into(), p));
        }
        pids
    }

    /// The process id of daemon `name`, while it runs.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.pids()
            .into_iter()
            .find_map(|(n, p)| (n == name).then_some(p))
    }

    /// Moves daemon `name`'s base directory onto an ext4 of `mib` MiB of its own (stopped,
    /// mounted, restarted; needs root), for disk-full drills ([`Cluster::small_fs`]).
    pub fn put_on_small_fs(&mut self, name: &str, mib: u64) -> Result<()> {
        self.stop_node(name)?;
        let image = self.path().join(format!("{name}.ext4"));
        let fs = smallfs::SmallFs::mount(&self.base_of(name), &image, mib)?;
        self.small_fs.insert(name.into(), fs);
        self.start_node(name)
    }

    /// The small file system under daemon `name`'s base directory.
    pub fn small_fs(&self, name: &str) -> Result<&smallfs::SmallFs> {
        self.small_fs
            .get(name)
            .with_context(|| format!("{name} is not on a small file system"))
    }

    /// The base directory of daemon `name`.
    pub fn base_of(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Issues a certificate for `role`/`id` with the cluster's CA into its certificate
    /// directory (an identity the cluster file does not know, for hostile peers).
    pub fn issue(&self, role: Role, id: &str) -> Result<()> {
        let certs = self.path().join("certs");
        let ca = ClusterCa::load(&certs)?;
        let peer = PeerId::new(role, id)?;
        ca.issue(&peer, &IssueOptions::default())?
            .save(&certs, false)?;
        Ok(())
    }

    /// A client with the operator's certificate.
    pub fn operator(&self) -> Result<Operator> {
        self.wire_client(Role::Operator, "console")
    }

    /// A client with the certificate of `role` `id` from the cluster's certificate
    /// directory (a proxy's, to speak to an archive as that proxy does).
    pub fn wire_client(&self, role: Role, id: &str) -> Result<Operator> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let me = PeerId::new(role, id)?;
        let files = walb_wire::TlsFiles::in_dir(&self.path().join("certs"), &me);
        let cfg = walb_wire::NodeConfig::new("127.0.0.1:0".parse()?, false);
        let node = {
            let _g = rt.enter();
            walb_wire::Node::bind(cfg, files)?
        };
        Ok(Operator {
            rt,
            node,
            ports: self.ports.clone(),
        })
    }
}
