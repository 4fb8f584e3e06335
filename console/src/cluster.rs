//! The cluster file: which daemons exist, where they listen, and how the console proves
//! who it is.
//!
//! A cluster file is TOML:
//!
//! ```toml
//! name = "tutorial"
//!
//! [certs]                      # relative paths are relative to this file
//! ca = "certs/ca.crt"          # the cluster CA certificate
//! cert = "certs/operator-console.crt"   # the console's own certificate (operator or viewer)
//! key = "certs/operator-console.key"
//!
//! [[node]]
//! name = "s0"                  # the daemon's id (its certificate says walb://storage/s0)
//! role = "storage"
//! addr = "localhost:10000"
//! archive = "a0"               # storage only: its primary archive ...
//! proxies = ["p0"]             # ... and its proxies in priority order (the backup group)
//!
//! [[node]]
//! name = "p0"
//! role = "proxy"
//! addr = "localhost:10100"
//!
//! [[node]]
//! name = "a0"
//! role = "archive"
//! addr = "localhost:10200"
//! ```
//!
//! [`Cluster::parse`] validates the whole file at once (unknown keys, duplicate names,
//! references to unknown nodes or nodes of the wrong role) so that a mistake is reported
//! with the file's name before anything is sent. [`locate`] finds the file: `--cluster`,
//! else `$WALB_CLUSTER`, else `walb/cluster.toml` in the config directory, else the lab's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use walb_wire::{Role, TlsFiles};

/// The environment variable naming the cluster file.
pub const CLUSTER_ENV: &str = "WALB_CLUSTER";
/// The file name of a cluster file in the config directory and in a lab directory.
pub const CLUSTER_FILE_NAME: &str = "cluster.toml";

/// Why a cluster file could not be found, read or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No cluster file anywhere.
    #[error(
        "no cluster file: pass --cluster FILE or set ${CLUSTER_ENV} (looked for {})",
        .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// Where we looked.
        looked: Vec<PathBuf>,
    },
    /// The file could not be read.
    #[error("cannot read cluster file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or lacks a field.
    #[error("cluster file {origin}: {message}")]
    Parse {
        /// The file (or `<memory>`).
        origin: String,
        /// What the TOML parser said (with line and column).
        message: String,
    },
    /// The file parses but says something impossible.
    #[error("cluster file {origin}: {message}")]
    Invalid {
        /// The file (or `<memory>`).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A command named a node the file does not have.
    #[error("unknown node {name:?}: the cluster file {origin} has {known}")]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The file.
        origin: String,
        /// The names it has.
        known: String,
    },
    /// A command named a node of the wrong role.
    #[error("{name} is {}, {command} needs {}", article(*.role), roles_phrase(.want))]
    WrongRole {
        /// The node.
        name: String,
        /// Its role.
        role: Role,
        /// The command.
        command: String,
        /// The roles the command works on.
        want: Vec<Role>,
    },
    /// A storage without an archive in the file.
    #[error("storage {storage} has no archive in the cluster file {origin} (add archive = \"NAME\" to its [[node]])")]
    NoArchive {
        /// The storage.
        storage: String,
        /// The file.
        origin: String,
    },
    /// The file could not be written (the lab writes one).
    #[error("cannot write cluster file {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// "a storage", "an archive".
pub fn article(role: Role) -> String {
    match role {
        Role::Archive | Role::Operator => format!("an {role}"),
        _ => format!("a {role}"),
    }
}

fn roles_phrase(roles: &[Role]) -> String {
    let names: Vec<String> = roles.iter().map(|r| article(*r)).collect();
    match names.len() {
        0 => "no node".to_owned(),
        1 => names[0].clone(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

/// The file as written (serde's view).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's name.
    pub name: String,
    /// The console's TLS material.
    pub certs: CertsSection,
    /// The daemons.
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeSection>,
}

/// `[certs]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertsSection {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// The console's certificate.
    pub cert: PathBuf,
    /// The console's key.
    pub key: PathBuf,
}

/// One `[[node]]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The daemon's id.
    pub name: String,
    /// `storage`, `proxy` or `archive`.
    pub role: String,
    /// `HOST:PORT`.
    pub addr: String,
    /// Storage: its primary archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// Storage: its proxies in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<String>,
}

/// A daemon of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Its id (the name commands use).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `HOST:PORT` (or a bare port on localhost).
    pub addr: String,
    /// Storage: its primary archive.
    pub archive: Option<String>,
    /// Storage: its proxies in priority order.
    pub proxies: Vec<String>,
}

/// A storage's backup group: where its volumes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupGroup<'a> {
    /// The storage.
    pub storage: &'a NodeEntry,
    /// Its primary archive.
    pub archive: &'a NodeEntry,
    /// Its proxies in priority order.
    pub proxies: Vec<&'a NodeEntry>,
}

/// A validated cluster file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name.
    pub name: String,
    /// Where it was read from (for messages), or `<memory>`.
    pub origin: String,
    /// The console's TLS files (absolute, or relative to the working directory).
    pub tls: TlsFiles,
    /// The daemons, in file order.
    pub nodes: Vec<NodeEntry>,
}

impl Cluster {
    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<Cluster, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Cluster::parse(&text, base, &path.display().to_string())
    }

    /// Parses and validates cluster-file text; relative certificate paths are taken
    /// relative to `base`; `origin` names the file in messages.
    pub fn parse(text: &str, base: &Path, origin: &str) -> Result<Cluster, ClusterError> {
        let file: ClusterFile = toml::from_str(text).map_err(|e| ClusterError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Cluster::from_file(file, base, origin)
    }

    /// Validates a parsed file.
    pub fn from_file(
        file: ClusterFile,
        base: &Path,
        origin: &str,
    ) -> Result<Cluster, ClusterError> {
        let invalid = |message: String| ClusterError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        if file.name.trim().is_empty() {
            return Err(invalid("the cluster name is empty".into()));
        }
        let mut nodes: Vec<NodeEntry> = Vec::with_capacity(file.nodes.len());
        for (i, n) in file.nodes.iter().enumerate() {
            let what = if n.name.is_empty() {
                format!("node #{}", i + 1)
            } else {
                format!("node {}", n.name)
            };
            walb_wire::identity::validate_id(&n.name)
                .map_err(|e| invalid(format!("{what}: {e}")))?;
            let role: Role = n
                .role
                .parse()
                .ok()
                .filter(|r: &Role| r.is_server())
                .ok_or_else(|| {
                    invalid(format!(
                        "{what}: unknown role {:?} (want storage, proxy or archive)",
                        n.role
                    ))
                })?;
            if nodes.iter().any(|m| m.name == n.name) {
                return Err(invalid(format!("{what} is listed twice")));
            }
            check_addr(&n.addr).map_err(|m| invalid(format!("{what}: {m}")))?;
            if role != Role::Storage && (n.archive.is_some() || !n.proxies.is_empty()) {
                return Err(invalid(format!(
                    "{what}: only a storage has an archive and proxies (it is {})",
                    article(role)
                )));
            }
            nodes.push(NodeEntry {
                name: n.name.clone(),
                role,
                addr: n.addr.clone(),
                archive: n.archive.clone(),
                proxies: n.proxies.clone(),
            });
        }
        for n in &nodes {
            let refs = n
                .archive
                .iter()
                .map(|a| (a, Role::Archive))
                .chain(n.proxies.iter().map(|p| (p, Role::Proxy)));
            for (name, want) in refs {
                match nodes.iter().find(|m| &m.name == name) {
                    None => {
                        return Err(invalid(format!(
                            "storage {}: its {want} {name} is not a [[node]] of the file",
                            n.name
                        )))
                    }
                    Some(m) if m.role != want => {
                        return Err(invalid(format!(
                            "storage {}: {name} is {}, not {}",
                            n.name,
                            article(m.role),
                            article(want)
                        )))
                    }
                    Some(_) => {}
                }
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = n.proxies.iter().find(|p| !seen.insert(*p)) {
                return Err(invalid(format!(
                    "storage {}: proxy {dup} is listed twice",
                    n.name
                )));
            }
        }
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        Ok(Cluster {
            name: file.name,
            origin: origin.to_owned(),
            tls: TlsFiles {
                ca_cert: abs(&file.certs.ca),
                cert: abs(&file.certs.cert),
                key: abs(&file.certs.key),
            },
            nodes,
        })
    }

    /// The file form of this cluster (certificate paths as they are now).
    pub fn to_file(&self) -> ClusterFile {
        ClusterFile {
            name: self.name.clone(),
            certs: CertsSection {
                ca: self.tls.ca_cert.clone(),
                cert: self.tls.cert.clone(),
                key: self.tls.key.clone(),
            },
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeSection {
                    name: n.name.clone(),
                    role: n.role.to_string(),
                    addr: n.addr.clone(),
                    archive: n.archive.clone(),
                    proxies: n.proxies.clone(),
                })
                .collect(),
        }
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeEntry, ClusterError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| ClusterError::UnknownNode {
                name: name.to_owned(),
                origin: self.origin.clone(),
                known: if self.nodes.is_empty() {
                    "no nodes".to_owned()
                } else {
                    self.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// The node called `name`, which `command` needs to be one of `want`.
    pub fn node_as(
        &self,
        name: &str,
        want: &[Role],
        command: &str,
    ) -> Result<&NodeEntry, ClusterError> {
        let n = self.node(name)?;
        if !want.contains(&n.role) {
            return Err(ClusterError::WrongRole {
                name: n.name.clone(),
                role: n.role,
                command: command.to_owned(),
                want: want.to_vec(),
            });
        }
        Ok(n)
    }

    /// The nodes of one role, in file order.
    pub fn nodes_of(&self, role: Role) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// The backup group of storage `name`.
    pub fn group(&self, name: &str, command: &str) -> Result<BackupGroup<'_>, ClusterError> {
        let storage = self.node_as(name, &[Role::Storage], command)?;
        let archive = storage
            .archive
            .as_deref()
            .ok_or_else(|| ClusterError::NoArchive {
                storage: storage.name.clone(),
                origin: self.origin.clone(),
            })
            .and_then(|a| self.node(a))?;
        let proxies = storage
            .proxies
            .iter()
            .map(|p| self.node(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BackupGroup {
            storage,
            archive,
            proxies,
        })
    }

    /// Writes this cluster as a TOML file ([`ClusterFile::save`]).
    pub fn save(&self, path: &Path) -> Result<(), ClusterError> {
        self.to_file().save(path)
    }
}

impl CertsSection {
    /// The cluster CA and operator `id`'s certificate and key in the directory `dir`, as
    /// `walb-console ca` and the lab name them.
    pub fn in_dir(dir: &Path, id: &str) -> CertsSection {
        CertsSection {
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("operator-{id}.crt")),
            key: dir.join(format!("operator-{id}.key")),
        }
    }
}

impl NodeSection {
    /// A daemon `name` of `role` at `addr`.
    pub fn new(name: &str, role: Role, addr: &str) -> NodeSection {
        NodeSection {
            name: name.to_owned(),
            role: role.to_string(),
            addr: addr.to_owned(),
            archive: None,
            proxies: Vec::new(),
        }
    }

    /// A storage's backup group: its primary archive and its proxies in priority order.
    pub fn backing_up_to(mut self, archive: &str, proxies: &[String]) -> NodeSection {
        self.archive = Some(archive.to_owned());
        self.proxies = proxies.to_vec();
        self
    }
}

impl ClusterFile {
    /// Writes the file as TOML, mode 0644, atomically and never through a link
    /// ([`walb_wire::files`]: an exclusive temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), ClusterError> {
        let err = |source| ClusterError::Write {
            path: path.to_owned(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let text = format!("# walb cluster file\n{text}");
        walb_wire::files::write_file(
            path,
            text.as_bytes(),
            walb_wire::files::MODE_PUBLIC,
            walb_wire::files::Place::Replace,
        )
        .map_err(err)
    }
}

/// Checks `HOST:PORT` (or a bare port) without resolving it.
fn check_addr(addr: &str) -> Result<(), String> {
    if addr.parse::<u16>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address {addr:?} is not HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("address {addr:?} is not HOST:PORT"));
    }
    Ok(())
}

/// The cluster file in the config directory (`~/.config/walb/cluster.toml`).
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "walb").map(|d| d.config_dir().join(CLUSTER_FILE_NAME))
}

/// The default lab directory (`~/.local/share/walb/lab`).
pub fn default_lab_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "walb").map(|d| d.data_dir().join("lab"))
}

/// Finds the cluster file: `flag`, else `$WALB_CLUSTER`, else the config directory's,
/// else the default lab's (the first two need not exist yet: reading them tells).
pub fn locate(flag: Option<&Path>) -> Result<PathBuf, ClusterError> {
    locate_in(
        flag,
        std::env::var_os(CLUSTER_ENV).map(PathBuf::from),
        default_config_path(),
        default_lab_dir().map(|d| d.join(CLUSTER_FILE_NAME)),
    )
}

/// [`locate`] with its inputs given (testable).
pub fn locate_in(
    flag: Option<&Path>,
    env: Option<PathBuf>,
    config: Option<PathBuf>,
    lab: Option<PathBuf>,
) -> Result<PathBuf, ClusterError> {
    if let Some(f) = flag {
        return Ok(f.to_owned());
    }
    if let Some(e) = env.filter(|e| !e.as_os_str().is_empty()) {
        return Ok(e);
    }
    let looked: Vec<PathBuf> = config.into_iter().chain(lab).collect();
    looked
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ClusterError::NotFound { looked })
}

/// A cluster for unit tests: s0 (archive a0, proxy p0), p0, a0 and a1.
#[cfg(test)]
pub(crate) fn test_cluster() -> Cluster {
    let text = r#"
name = "t"
[certs]
ca = "ca.crt"
cert = "c.crt"
key = "c.key"
[[node]]
name = "s0"
role = "storage"
addr = "localhost:10000"
archive = "a0"
proxies = ["p0"]
[[node]]
name = "p0"
role = "proxy"
addr = "localhost:10100"
[[node]]
name = "a0"
role = "archive"
addr = "localhost:10200"
[[node]]
name = "a1"
role = "archive"
addr = "localhost:10201"
"#;
    match Cluster::parse(text, Path::new("/"), "t") {
        Ok(c) => c,
        Err(e) => panic!("the test cluster does not parse: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "tutorial"
[certs]
ca = "certs/ca.crt"
cert = "/abs/operator-console.crt"
key = "certs/operator-console.key"

[[node]]
name = "s0"
role = "storage"
addr = "localhost:10000"
archive = "a0"
proxies = ["p0", "p1"]

[[node]]
name = "p0"
role = "proxy"
addr = "localhost:10100"

[[node]]
name = "p1"
role = "proxy"
addr = "10101"

[[node]]
name = "a0"
role = "archive"
addr = "localhost:10200"
"#;

    fn parse(text: &str) -> Result<Cluster, ClusterError> {
        Cluster::parse(text, Path::new("/etc/walb"), "test.toml")
    }

    #[test]
    fn good_file_parses_with_groups_and_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.name, "tutorial");
        assert_eq!(c.tls.ca_cert, Path::new("/etc/walb/certs/ca.crt"));
        assert_eq!(c.tls.cert, Path::new("/abs/operator-console.crt"));
        let g = c.group("s0", "full-backup").unwrap();
        assert_eq!(g.archive.name, "a0");
        let names: Vec<&str> = g.proxies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p0", "p1"]);
        assert_eq!(c.nodes_of(Role::Proxy).count(), 2);
        // Round trip through the file form.
        let again = Cluster::from_file(c.to_file(), Path::new("/x"), "again").unwrap();
        assert_eq!(again.nodes, c.nodes);
    }

    #[test]
    fn missing_field_is_named_with_its_line() {
        let text = GOOD.replace("addr = \"localhost:10100\"\n", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("missing field `addr`"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn typos_and_bad_references_are_refused() {
        let cases = [
            (
                GOOD.replace("proxies =", "proxys ="),
                "unknown field `proxys`",
            ),
            (
                GOOD.replace(
                    "role = \"proxy\"\naddr = \"10101\"",
                    "role = \"proxi\"\naddr = \"10101\"",
                ),
                "node p1: unknown role \"proxi\"",
            ),
            (
                GOOD.replace("archive = \"a0\"", "archive = \"a9\""),
                "its archive a9 is not a [[node]]",
            ),
            (
                GOOD.replace("archive = \"a0\"", "archive = \"p0\""),
                "p0 is a proxy, not an archive",
            ),
            (
                GOOD.replace("name = \"p1\"", "name = \"p0\""),
                "node p0 is listed twice",
            ),
            (
                GOOD.replace("addr = \"localhost:10200\"", "addr = \"localhost\""),
                "not HOST:PORT",
            ),
            (
                GOOD.replace(
                    "name = \"a0\"\nrole = \"archive\"",
                    "name = \"a0\"\nrole = \"operator\"",
                ),
                "unknown role \"operator\"",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn unknown_node_and_wrong_role_say_what_is_needed() {
        let c = parse(GOOD).unwrap();
        let e = c.node("s9").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown node \"s9\": the cluster file test.toml has s0, p0, p1, a0"
        );
        let e = c.node_as("s0", &[Role::Archive], "restore").unwrap_err();
        assert_eq!(e.to_string(), "s0 is a storage, restore needs an archive");
        let e = c
            .node_as("p0", &[Role::Storage, Role::Archive], "reset")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "p0 is a proxy, reset needs a storage or an archive"
        );
        assert!(c.group("p0", "full-backup").is_err());
    }

    #[test]
    fn storage_without_archive_has_no_group() {
        let text = GOOD.replace("archive = \"a0\"\n", "");
        let c = parse(&text).unwrap();
        let e = c.group("s0", "full-backup").unwrap_err().to_string();
        assert!(e.contains("storage s0 has no archive"), "{e}");
    }

    #[test]
    fn locate_order_is_flag_env_config_lab() {
        let dir = std::env::temp_dir().join(format!("walb-locate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (cfg, lab) = (dir.join("cfg.toml"), dir.join("lab.toml"));
        let flag = Path::new("/flag.toml");
        assert_eq!(
            locate_in(Some(flag), Some("/env".into()), None, None).unwrap(),
            flag
        );
        assert_eq!(
            locate_in(None, Some("/env".into()), Some(cfg.clone()), None).unwrap(),
            Path::new("/env")
        );
        let e = locate_in(None, None, Some(cfg.clone()), Some(lab.clone())).unwrap_err();
        assert!(e.to_string().contains("lab.toml"), "{e}");
        std::fs::write(&lab, "").unwrap();
        assert_eq!(
            locate_in(None, None, Some(cfg.clone()), Some(lab.clone())).unwrap(),
            lab
        );
        std::fs::write(&cfg, "").unwrap();
        assert_eq!(
            locate_in(None, None, Some(cfg.clone()), Some(lab)).unwrap(),
            cfg
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
