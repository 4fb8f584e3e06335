//! `walb-console ca`: create the cluster CA and issue peer certificates.
//!
//! The CA directory holds `ca.crt` and `ca.key`; it defaults to the XDG config directory
//! (`~/.config/walb/certs`). `issue` writes `ROLE-ID.crt` and `ROLE-ID.key` into an output
//! directory (the CA directory by default) and puts a copy of `ca.crt` beside them, so the
//! output directory is everything a daemon needs, and never the CA key.
//!
//! `revoke` adds an entry to the deny list (`revoked.txt`, see [`walb_wire::deny`]) beside
//! the CA certificate, and writes the same list beside the `ca.crt` of each daemon
//! certificate directory it is given; daemons read it at start and on SIGHUP.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use walb_wire::certs::{self, CA_CERT_FILE};
use walb_wire::deny::{self, Entry};
use walb_wire::files::{self, Place, MODE_PUBLIC};
use walb_wire::{ClusterCa, IssueOptions, PeerId, Role, TlsFiles};

/// Resolves the CA directory: the flag, else the XDG default.
pub fn ca_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(d) => Ok(d),
        None => certs::default_cert_dir()
            .context("no home directory to put certificates in; pass --ca-dir"),
    }
}

/// `ca init`: creates a CA in `dir`. Returns the certificate's path.
pub fn init(dir: &Path, name: &str, days: i64, force: bool) -> Result<PathBuf> {
    if days <= 0 {
        bail!("--days must be positive");
    }
    let ca = ClusterCa::generate(name, days).context("creating the CA")?;
    ca.save(dir, force)
        .with_context(|| format!("writing the CA into {}", dir.display()))?;
    Ok(dir.join(CA_CERT_FILE))
}

/// What `ca issue` asks for.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The peer's role.
    pub role: Role,
    /// The peer's id.
    pub id: String,
    /// Host names and addresses to add as SANs.
    pub hosts: Vec<String>,
    /// Validity in days.
    pub days: i64,
    /// Overwrite existing files.
    pub force: bool,
}

/// `ca issue`: issues a certificate with the CA in `ca_dir`, writes it into `out_dir`.
pub fn issue(ca_dir: &Path, out_dir: &Path, req: &IssueRequest) -> Result<TlsFiles> {
    if req.days <= 0 {
        bail!("--days must be positive");
    }
    let peer = PeerId::new(req.role, &req.id)?;
    let ca = ClusterCa::load(ca_dir)
        .with_context(|| format!("loading the CA from {} (run `ca init`?)", ca_dir.display()))?;
    let opts = IssueOptions {
        hosts: req.hosts.clone(),
        days: req.days,
        ..IssueOptions::default()
    };
    let issued = ca.issue(&peer, &opts)?;
    let files = issued
        .save(out_dir, req.force)
        .with_context(|| format!("writing into {}", out_dir.display()))?;
    let ca_src = ca_dir.join(CA_CERT_FILE);
    if ca_src.canonicalize().ok() != files.ca_cert.canonicalize().ok() {
        copy_ca_cert(&ca_src, &files.ca_cert, req.force)?;
    }
    Ok(files)
}

/// Puts a copy of the CA certificate `src` at `dst` (0644, through
/// [`walb_wire::files`]): kept if it is already there, refused if another one is there
/// unless `force`, which replaces it (a link at `dst` is replaced, not followed).
fn copy_ca_cert(src: &Path, dst: &Path, force: bool) -> Result<()> {
    let pem = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_file() && std::fs::read(dst).ok().as_deref() == Some(&pem[..]) => {
            return Ok(())
        }
        Ok(_) if !force => bail!(
            "{} exists and is not the CA's certificate (pass --force to overwrite)",
            dst.display()
        ),
        _ => {}
    }
    let place = if force { Place::Replace } else { Place::New };
    files::write_file(dst, &pem, MODE_PUBLIC, place)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))
}

/// What `ca revoke` did.
#[derive(Debug)]
pub struct Revoked {
    /// The entry.
    pub entry: Entry,
    /// Whether the CA's list had it already.
    pub already: bool,
    /// The deny lists written (the CA's first).
    pub written: Vec<PathBuf>,
}

/// Parses `--id ROLE/ID` or `--serial HEX` into a deny list entry.
pub fn revoke_entry(id: Option<&str>, serial: Option<&str>) -> Result<Entry> {
    match (id, serial) {
        (Some(id), None) => Ok(Entry::Id(id.parse().with_context(|| format!("--id {id}"))?)),
        (None, Some(s)) => Ok(Entry::Serial(
            s.parse().with_context(|| format!("--serial {s}"))?,
        )),
        _ => bail!("give one of --id ROLE/ID or --serial HEX"),
    }
}

/// `ca revoke`: adds `entry` to the deny list beside the CA certificate in `ca_dir`, and
/// writes the resulting list beside the `ca.crt` of every directory of `out_dirs`. Each
/// file is written whole or not at all.
pub fn revoke(ca_dir: &Path, entry: Entry, out_dirs: &[PathBuf]) -> Result<Revoked> {
    let ca_cert = ca_dir.join(CA_CERT_FILE);
    if !ca_cert.is_file() {
        bail!(
            "no CA certificate at {} (run `ca init`, or pass --ca-dir)",
            ca_cert.display()
        );
    }
    // Check every destination first: nothing is written unless all can be.
    for dir in out_dirs {
        if !dir.join(CA_CERT_FILE).is_file() {
            bail!(
                "--out-dir {}: no {CA_CERT_FILE} there; it must be a daemon's certificate \
                 directory",
                dir.display()
            );
        }
    }
    let path = deny::path_beside(&ca_cert);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let note = format!(
        "revoked {}",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    let appended = deny::append(&text, &entry, &note).with_context(|| {
        format!(
            "{} does not parse; fix it before revoking more",
            path.display()
        )
    })?;
    let already = appended.is_none();
    let list = appended.unwrap_or(text);
    let mut written = Vec::new();
    let dests = std::iter::once(path).chain(out_dirs.iter().map(|d| d.join(deny::DENY_FILE)));
    for dst in dests {
        files::write_file(&dst, list.as_bytes(), files::MODE_PUBLIC, Place::Replace)
            .with_context(|| format!("writing {}", dst.display()))?;
        written.push(dst);
    }
    Ok(Revoked {
        entry,
        already,
        written,
    })
}

/// The serial number of the certificate in a PEM file, for `ca issue` to print.
pub fn serial_of(cert: &Path) -> Result<deny::Serial> {
    let chain = certs::load_certs(cert)?;
    let leaf = chain.first().context("no certificate")?;
    Ok(deny::Serial::of_cert(leaf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_issue_gives_a_daemon_bundle_without_the_ca_key() {
        let base = std::env::temp_dir().join(format!("walb-console-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (cadir, out) = (base.join("ca"), base.join("out"));
        init(&cadir, "test", 10, false).unwrap();
        assert!(
            init(&cadir, "test", 10, false).is_err(),
            "no silent overwrite"
        );
        let req = IssueRequest {
            role: Role::Archive,
            id: "a0".into(),
            hosts: vec!["127.0.0.1".into()],
            days: 5,
            force: false,
        };
        let files = issue(&cadir, &out, &req).unwrap();
        assert!(files.ca_cert.exists() && files.cert.exists() && files.key.exists());
        assert!(!out.join("ca.key").exists());
        let chain = certs::load_certs(&files.cert).unwrap();
        assert_eq!(
            PeerId::from_cert_der(&chain[0]).unwrap().to_string(),
            "archive/a0"
        );
        let bad = IssueRequest {
            id: "bad id".into(),
            ..req
        };
        assert!(issue(&cadir, &out, &bad).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
