//! Who may touch a volume: the peers bound to it on this daemon.
//!
//! A certificate says who a peer is; it does not say what the peer may touch. Every volume
//! of a proxy or an archive records the ids of the peers that serve it — the storage that
//! owns it, the proxies that send its diffs, the archives it takes replicas from — in a
//! `peers` file of its directory, set by the operator's `bind` command (which
//! `walb-console`'s init-storage, full-backup, hash-backup, replicate and
//! start-synchronizing issue from the cluster's backup groups), never by a peer.
//! [`admit`] checks a peer against that record before any protocol does anything for it:
//!
//! | peer | asks | of | needs |
//! |---|---|---|---|
//! | storage S | wlog transfer | a proxy | S is the volume's storage there |
//! | storage S | full or hash backup, latest snapshots | an archive | S is the volume's storage there |
//! | proxy P | wdiff transfer | an archive | P is among the volume's proxies there |
//! | archive A | replication | an archive | A is among the volume's archives (sources) there |
//!
//! Operators and viewers are checked by role only ([`walb_wire::auth`]). A storage accepts
//! no peer requests at all; the peers it dials are pinned by its options
//! (`--archive ID@HOST:PORT`, `--proxy ID@HOST:PORT,...`).
//!
//! The pure part is [`VolPeers`] (its text form, [`VolPeers::bind`]) and [`admit`]; the
//! [`PeerBook`] caches each volume's record and persists changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use walb_wire::msg::{BindCommand, BindHow, ErrorCode, PeerRole, VolPeers as VolPeersDto};
use walb_wire::{PeerId, Role, WireError};

use crate::persist::{self, PersistError};

/// The file of a volume directory that holds its bound peers.
pub const FILE: &str = "peers";

/// The peers bound to one volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolPeers {
    /// The storage that owns the volume.
    pub storage: Option<String>,
    /// Proxies that may send its diffs.
    pub proxies: BTreeSet<String>,
    /// Archives it may take replicas from.
    pub archives: BTreeSet<String>,
}

impl VolPeers {
    /// The text form: `#` comments, then one `ROLE ID` line per peer.
    pub fn encode(&self) -> String {
        let mut s =
            String::from("# walb: the peers bound to this volume (walb-console --exec bind)\n");
        if let Some(id) = &self.storage {
            s.push_str(&format!("storage {id}\n"));
        }
        for id in &self.proxies {
            s.push_str(&format!("proxy {id}\n"));
        }
        for id in &self.archives {
            s.push_str(&format!("archive {id}\n"));
        }
        s
    }

    /// Parses [`VolPeers::encode`]'s form; a bad line is named.
    pub fn parse(text: &str) -> Result<VolPeers, String> {
        let mut p = VolPeers::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {}: {line:?} (want ROLE ID)", i + 1);
            let (role, id) = line.split_once(' ').ok_or_else(bad)?;
            let id = id.trim();
            walb_wire::identity::validate_id(id).map_err(|e| format!("line {}: {e}", i + 1))?;
            match role {
                "storage" if p.storage.is_none() => p.storage = Some(id.to_owned()),
                "storage" => return Err(format!("line {}: a second storage", i + 1)),
                "proxy" => {
                    p.proxies.insert(id.to_owned());
                }
                "archive" => {
                    p.archives.insert(id.to_owned());
                }
                _ => return Err(bad()),
            }
        }
        Ok(p)
    }

    /// Applies a `bind` command (its ids were checked by [`walb_wire::admit`]).
    pub fn bind(&mut self, cmd: &BindCommand) -> Result<(), String> {
        let ids: BTreeSet<String> = cmd.ids.iter().cloned().collect();
        match cmd.role {
            PeerRole::Storage => {
                let one = || ids.iter().next().cloned();
                match cmd.how {
                    BindHow::Set => self.storage = one(),
                    BindHow::Add => match (&self.storage, one()) {
                        (_, None) => {}
                        (Some(have), Some(id)) if *have != id => {
                            return Err(format!(
                                "volume {} already belongs to storage {have}; bind --set to \
                                 hand it to {id}",
                                cmd.vol
                            ))
                        }
                        (_, id) => self.storage = id,
                    },
                    BindHow::Remove => {
                        if self.storage.as_ref().is_some_and(|s| ids.contains(s)) {
                            self.storage = None;
                        }
                    }
                }
            }
            PeerRole::Proxy | PeerRole::Archive => {
                let set = if cmd.role == PeerRole::Proxy {
                    &mut self.proxies
                } else {
                    &mut self.archives
                };
                match cmd.how {
                    BindHow::Set => *set = ids,
                    BindHow::Add => set.extend(ids),
                    BindHow::Remove => set.retain(|x| !ids.contains(x)),
                }
            }
        }
        Ok(())
    }

    /// The wire form.
    pub fn to_dto(&self) -> VolPeersDto {
        VolPeersDto {
            storage: self.storage.clone(),
            proxies: self.proxies.iter().cloned().collect(),
            archives: self.archives.iter().cloned().collect(),
        }
    }
}

/// What a peer asks to do with a volume (the table of the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A storage ships wlogs to a proxy.
    Wlog,
    /// A storage runs a full or hash backup, or gathers latest snapshots, at an archive.
    Backup,
    /// A proxy sends wdiffs to an archive.
    Wdiff,
    /// An archive replicates into another archive.
    Replicate,
}

impl Access {
    fn describe(self) -> &'static str {
        match self {
            Access::Wlog => "ship wlogs of",
            Access::Backup => "back up",
            Access::Wdiff => "send wdiffs of",
            Access::Replicate => "replicate",
        }
    }

    fn bound_role(self) -> PeerRole {
        match self {
            Access::Wlog | Access::Backup => PeerRole::Storage,
            Access::Wdiff => PeerRole::Proxy,
            Access::Replicate => PeerRole::Archive,
        }
    }
}

/// Checks that `peer` may do `access` to volume `vol` of this daemon (`me`, e.g.
/// `archive a0`), whose bound peers are `peers`: the peer's role must be the access's and
/// its id among the bound ones. A refusal is `Forbidden`, names the peer and the volume,
/// and says how the operator binds it.
pub fn admit(
    me: &str,
    vol: &str,
    peers: &VolPeers,
    peer: &PeerId,
    access: Access,
) -> Result<(), WireError> {
    let role = access.bound_role();
    let id = peer.id();
    let (bound, who): (bool, Vec<&String>) = match role {
        PeerRole::Storage => (
            peers.storage.as_deref() == Some(id),
            peers.storage.iter().collect(),
        ),
        PeerRole::Proxy => (peers.proxies.contains(id), peers.proxies.iter().collect()),
        PeerRole::Archive => (peers.archives.contains(id), peers.archives.iter().collect()),
    };
    if peer.role() == role.role() && bound {
        return Ok(());
    }
    let now = if who.is_empty() {
        format!("no {} is bound to it", role.as_str())
    } else {
        let names: Vec<&str> = who.iter().map(|s| s.as_str()).collect();
        format!("it is bound to {} {}", role.as_str(), names.join(", "))
    };
    Err(WireError::new(
        ErrorCode::Forbidden,
        format!(
            "{peer} may not {} volume {vol} on {me}: {now} (an operator binds peers with \
             `walb-console --exec bind {node} {vol} {} ID --add`)",
            access.describe(),
            role.as_str(),
            node = me.rsplit(' ').next().unwrap_or(me),
        ),
    ))
}

/// The bound peers of every volume of a daemon, read from the volume directories on first
/// use and written through on change.
#[derive(Debug, Default)]
pub struct PeerBook {
    cache: Mutex<BTreeMap<String, VolPeers>>,
}

impl PeerBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VolPeers>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peers of `vol`, whose directory is `dir` (nobody if it has no record).
    pub fn get(&self, vol: &str, dir: &Path) -> Result<VolPeers, PersistError> {
        if let Some(p) = self.lock().get(vol) {
            return Ok(p.clone());
        }
        let p = load(dir)?;
        self.lock().insert(vol.to_owned(), p.clone());
        Ok(p)
    }

    /// Applies `cmd` to the peers of `vol` in `dir`, durably; returns the new record.
    pub fn bind(&self, dir: &Path, cmd: &BindCommand) -> Result<VolPeers, WireError> {
        let mut p = self
            .get(&cmd.vol, dir)
            .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
        p.bind(cmd)
            .map_err(|m| WireError::new(ErrorCode::BadRequest, m))?;
        persist::write_atomic(&dir.join(FILE), p.encode().as_bytes())
            .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
        self.lock().insert(cmd.vol.clone(), p.clone());
        Ok(p)
    }

    /// Forgets the cached record of `vol` (its directory was removed or recreated).
    pub fn forget(&self, vol: &str) {
        self.lock().remove(vol);
    }
}

/// Reads the record of the volume directory `dir` (nobody if it has none).
pub fn load(dir: &Path) -> Result<VolPeers, PersistError> {
    let path = dir.join(FILE);
    match persist::read_opt(&path)? {
        None => Ok(VolPeers::default()),
        Some(b) => VolPeers::parse(&String::from_utf8_lossy(&b)).map_err(|m| PersistError {
            what: "parsing",
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, m),
        }),
    }
}

/// A peer this daemon dials: the id its certificate must carry, and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// Who must answer (`walb://ROLE/ID` in its certificate).
    pub id: PeerId,
    /// `HOST:PORT` (or a port on localhost).
    pub addr: String,
}

impl PeerAddr {
    /// Parses `ID@HOST:PORT` for a peer of `role`; the id is not optional: a daemon
    /// never talks to whoever happens to answer at an address.
    pub fn parse(role: Role, s: &str) -> Result<PeerAddr, String> {
        let (id, addr) = s.split_once('@').ok_or_else(|| {
            format!(
                "{s:?}: want ID@HOST:PORT, the {role}'s id (as in its certificate) and its                  address, e.g. {}@127.0.0.1:10200",
                match role {
                    Role::Proxy => "p0",
                    Role::Storage => "s0",
                    _ => "a0",
                }
            )
        })?;
        if addr.is_empty() {
            return Err(format!("{s:?}: no address after the id"));
        }
        let id = PeerId::new(role, id).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(PeerAddr {
            id,
            addr: addr.to_owned(),
        })
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id.id(), self.addr)
    }
}

/// `ROLE ID` of this daemon for messages (`archive a0`).
pub fn me(role: Role, id: &str) -> String {
    format!("{role} {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(role: PeerRole, ids: &[&str], how: BindHow) -> BindCommand {
        BindCommand {
            vol: "v".into(),
            role,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            how,
        }
    }

    fn peer(role: Role, id: &str) -> PeerId {
        PeerId::new(role, id).unwrap()
    }

    #[test]
    fn peer_addresses_need_an_id() {
        let a = PeerAddr::parse(Role::Archive, "a0@127.0.0.1:10200").unwrap();
        assert_eq!(
            (a.id.to_string().as_str(), a.addr.as_str()),
            ("archive/a0", "127.0.0.1:10200")
        );
        assert_eq!(a.to_string(), "a0@127.0.0.1:10200");
        let e = PeerAddr::parse(Role::Proxy, "127.0.0.1:10100").unwrap_err();
        assert!(e.contains("ID@HOST:PORT") && e.contains("p0@"), "{e}");
        assert!(PeerAddr::parse(Role::Proxy, "p0@").is_err());
        assert!(PeerAddr::parse(Role::Proxy, "p/0@h:1").is_err());
    }

    #[test]
    fn bind_sets_adds_and_removes() {
        let mut p = VolPeers::default();
        p.bind(&cmd(PeerRole::Storage, &["s0"], BindHow::Set))
            .unwrap();
        p.bind(&cmd(PeerRole::Proxy, &["p0", "p1"], BindHow::Add))
            .unwrap();
        p.bind(&cmd(PeerRole::Proxy, &["p0"], BindHow::Remove))
            .unwrap();
        p.bind(&cmd(PeerRole::Archive, &["a1"], BindHow::Set))
            .unwrap();
        assert_eq!(p.storage.as_deref(), Some("s0"));
        assert_eq!(p.proxies.iter().collect::<Vec<_>>(), ["p1"]);
        assert_eq!(p.archives.iter().collect::<Vec<_>>(), ["a1"]);
        // Adding the same storage again is fine; another one needs --set.
        p.bind(&cmd(PeerRole::Storage, &["s0"], BindHow::Add))
            .unwrap();
        let e = p
            .bind(&cmd(PeerRole::Storage, &["s1"], BindHow::Add))
            .unwrap_err();
        assert!(e.contains("already belongs to storage s0"), "{e}");
        p.bind(&cmd(PeerRole::Storage, &["s1"], BindHow::Set))
            .unwrap();
        assert_eq!(p.storage.as_deref(), Some("s1"));
        p.bind(&cmd(PeerRole::Storage, &[], BindHow::Set)).unwrap();
        assert_eq!(p.storage, None);
    }

    #[test]
    fn text_form_round_trips_and_names_bad_lines() {
        let mut p = VolPeers::default();
        p.bind(&cmd(PeerRole::Storage, &["s0"], BindHow::Set))
            .unwrap();
        p.bind(&cmd(PeerRole::Proxy, &["p0", "p1"], BindHow::Set))
            .unwrap();
        p.bind(&cmd(PeerRole::Archive, &["a0"], BindHow::Set))
            .unwrap();
        assert_eq!(VolPeers::parse(&p.encode()).unwrap(), p);
        assert_eq!(VolPeers::parse("").unwrap(), VolPeers::default());
        for bad in ["storage", "king k", "storage a/b", "storage s0\nstorage s1"] {
            let e = VolPeers::parse(bad).unwrap_err();
            assert!(e.starts_with("line "), "{bad}: {e}");
        }
    }

    /// The table of the module doc, row by row, with the peers that must be refused.
    #[test]
    fn admission_follows_the_table() {
        let mut p = VolPeers::default();
        p.bind(&cmd(PeerRole::Storage, &["s0"], BindHow::Set))
            .unwrap();
        p.bind(&cmd(PeerRole::Proxy, &["p0"], BindHow::Set))
            .unwrap();
        p.bind(&cmd(PeerRole::Archive, &["a0"], BindHow::Set))
            .unwrap();
        let cases = [
            (Role::Storage, "s0", Access::Wlog, true),
            (Role::Storage, "s0", Access::Backup, true),
            (Role::Storage, "s1", Access::Backup, false),
            (Role::Storage, "s1", Access::Wlog, false),
            (Role::Proxy, "s0", Access::Backup, false),
            (Role::Proxy, "p0", Access::Wdiff, true),
            (Role::Proxy, "p1", Access::Wdiff, false),
            (Role::Storage, "p0", Access::Wdiff, false),
            (Role::Archive, "a0", Access::Replicate, true),
            (Role::Archive, "a9", Access::Replicate, false),
            (Role::Proxy, "a0", Access::Replicate, false),
        ];
        for (role, id, access, ok) in cases {
            let r = admit("archive a1", "v", &p, &peer(role, id), access);
            assert_eq!(r.is_ok(), ok, "{role}/{id} {access:?}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.code, ErrorCode::Forbidden);
                assert!(
                    e.message.contains(&format!("{role}/{id}")) && e.message.contains("volume v"),
                    "{e}"
                );
            }
        }
        let e = admit(
            "proxy p0",
            "v",
            &VolPeers::default(),
            &peer(Role::Storage, "s0"),
            Access::Wlog,
        )
        .unwrap_err();
        assert!(
            e.message.contains("no storage is bound") && e.message.contains("bind p0 v storage ID"),
            "{e}"
        );
    }
}
