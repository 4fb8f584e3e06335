//! What every cluster on one machine is launched from, the lab's and the tests' alike:
//! the certificates of its peers ([`ensure_certs`]), each WalB device's `wdevc` command
//! lines ([`DeviceSpec`]) and each daemon's command line ([`DaemonSpec`]), parameterised
//! by directory and address. The lab (`lab up`,
//! `lab add-node`), the end-to-end harness and the chaos world build their daemons
//! through it, so a daemon option changes in one place.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use walb_wire::{ClusterCa, IssueOptions, PeerId, Role};

use super::LabError;

/// One daemon to launch: who it is, where it listens and keeps its files, and (for a
/// storage) whom it dials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSpec {
    /// Its id.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `HOST:PORT` it listens on.
    pub listen: String,
    /// Its base directory.
    pub base: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// The directory of the cluster CA and its certificate.
    pub cert_dir: PathBuf,
    /// Storage: its primary archive as `ID@HOST:PORT` (the id is pinned when dialled).
    pub archive: Option<String>,
    /// Storage: its proxies as `ID@HOST:PORT`, in priority order.
    pub proxies: Vec<String>,
    /// Options after the common ones.
    pub extra: Vec<OsString>,
}

impl DaemonSpec {
    /// Daemon `name` of `role` listening on `listen`, with its base directory, log and
    /// certificates where the lab keeps them in `dir` (`NAME/`, `NAME.log`, `certs/`).
    pub fn in_dir(dir: &Path, name: &str, role: Role, listen: &str) -> DaemonSpec {
        DaemonSpec {
            name: name.to_owned(),
            role,
            listen: listen.to_owned(),
            base: dir.join(name),
            log: dir.join(format!("{name}.log")),
            cert_dir: dir.join("certs"),
            archive: None,
            proxies: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A storage's backup group, each as `ID@HOST:PORT`.
    pub fn dialling(mut self, archive: String, proxies: Vec<String>) -> DaemonSpec {
        self.archive = Some(archive);
        self.proxies = proxies;
        self
    }

    /// More options, after the common ones.
    pub fn with<I, S>(mut self, extra: I) -> DaemonSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra.extend(extra.into_iter().map(Into::into));
        self
    }

    /// The daemon's program name.
    pub fn binary(&self) -> &'static str {
        binary_of(self.role)
    }

    /// Its command line (the options of `walb_daemon::opts`).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--base-dir".into(),
            self.base.clone().into(),
            "--log-file".into(),
            self.log.clone().into(),
            "--listen".into(),
            self.listen.as_str().into(),
            "--id".into(),
            self.name.as_str().into(),
            "--cert-dir".into(),
            self.cert_dir.clone().into(),
        ];
        if let Some(archive) = &self.archive {
            a.extend([
                "--archive".into(),
                archive.into(),
                "--proxy".into(),
                self.proxies.join(",").into(),
            ]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// A WalB device on a log device and a data device (files or block devices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The device's name (`/dev/walb/NAME`, the emulator's `NAME.sock`).
    pub name: String,
    /// The log device.
    pub ldev: PathBuf,
    /// The data device.
    pub ddev: PathBuf,
    /// The userspace emulator, not the kernel driver.
    pub emulate: bool,
    /// Emulated without a block device or FUSE file (its control socket only).
    pub no_block: bool,
}

impl DeviceSpec {
    /// `wdevc format-ldev LDEV DDEV -n NAME`: a new log for the data device.
    pub fn format_args(&self) -> Vec<OsString> {
        vec![
            "format-ldev".into(),
            self.ldev.clone().into(),
            self.ddev.clone().into(),
            "-n".into(),
            self.name.as_str().into(),
        ]
    }

    /// `wdevc create-wdev LDEV DDEV -n NAME [--emulate] [--no-block]`: runs the device
    /// (an emulated one redoes its log first).
    pub fn create_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "create-wdev".into(),
            self.ldev.clone().into(),
            self.ddev.clone().into(),
            "-n".into(),
            self.name.as_str().into(),
        ];
        if self.emulate {
            a.push("--emulate".into());
        }
        if self.no_block {
            a.push("--no-block".into());
        }
        a
    }
}

/// The program of a daemon of `role`.
pub fn binary_of(role: Role) -> &'static str {
    match role {
        Role::Storage => "walb-storage",
        Role::Proxy => "walb-proxy",
        _ => "walb-archive",
    }
}

/// Creates the cluster CA in `dir` (named `ca_name`) unless it is there, and the
/// certificates of `peers` that are missing, for this machine's loopback names.
pub fn ensure_certs(dir: &Path, ca_name: &str, peers: &[PeerId]) -> Result<(), LabError> {
    let ca = if dir.join(walb_wire::certs::CA_CERT_FILE).exists() {
        ClusterCa::load(dir)?
    } else {
        let ca = ClusterCa::generate(ca_name, walb_wire::certs::CA_DAYS_DEFAULT)?;
        ca.save(dir, false)?;
        ca
    };
    let opts = IssueOptions {
        hosts: vec!["127.0.0.1".into(), "localhost".into()],
        ..IssueOptions::default()
    };
    for peer in peers {
        let files = walb_wire::TlsFiles::in_dir(dir, peer);
        if files.cert.exists() && files.key.exists() {
            continue;
        }
        ca.issue(peer, &opts)?.save(dir, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: Vec<OsString>) -> Vec<String> {
        a.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_storage_dials_its_group_and_takes_extra_options_last() {
        let s = DaemonSpec::in_dir(Path::new("/lab"), "s0", Role::Storage, "127.0.0.1:1")
            .dialling("a0@h:3".into(), vec!["p0@h:2".into(), "p1@h:4".into()])
            .with(["--snapshot-interval", "1"]);
        assert_eq!(s.binary(), "walb-storage");
        let a = strings(s.args());
        let at = |k: &str| a.iter().position(|x| x == k).unwrap();
        assert_eq!(a[at("--base-dir") + 1], "/lab/s0");
        assert_eq!(a[at("--log-file") + 1], "/lab/s0.log");
        assert_eq!(a[at("--cert-dir") + 1], "/lab/certs");
        assert_eq!(a[at("--archive") + 1], "a0@h:3");
        assert_eq!(a[at("--proxy") + 1], "p0@h:2,p1@h:4");
        assert_eq!(a[a.len() - 2..], ["--snapshot-interval", "1"]);
    }

    #[test]
    fn a_device_is_formatted_then_created_under_its_name() {
        let d = DeviceSpec {
            name: "w0".into(),
            ldev: "/l".into(),
            ddev: "/d".into(),
            emulate: true,
            no_block: true,
        };
        assert_eq!(
            strings(d.format_args()),
            ["format-ldev", "/l", "/d", "-n", "w0"]
        );
        assert_eq!(
            strings(d.create_args()),
            [
                "create-wdev",
                "/l",
                "/d",
                "-n",
                "w0",
                "--emulate",
                "--no-block"
            ]
        );
        let driver = DeviceSpec {
            emulate: false,
            no_block: false,
            ..d
        };
        assert_eq!(strings(driver.create_args()).len(), 5);
    }

    #[test]
    fn a_proxy_dials_nobody() {
        let p = DaemonSpec::in_dir(Path::new("/lab"), "p0", Role::Proxy, "127.0.0.1:2");
        assert_eq!(p.binary(), "walb-proxy");
        let a = strings(p.args());
        assert!(
            !a.iter().any(|x| x == "--archive" || x == "--proxy"),
            "{a:?}"
        );
    }
}
