//! A proxy volume on disk: archive destinations, the size record, and the wdiff queues.
//!
//! Layout of `<base>/<vol>/` (walb-tools.md §4.8):
//!
//! - `size`: the volume size in logical blocks (decimal text), learned from wlog transfers;
//! - `<archive>.archive`: one destination, text `HOST:PORT CODEC:LEVEL:NCPU DELAY`;
//! - `received/`: the landing directory of converted wlogs (empty between transfers);
//! - `sendto/<archive>/*.wdiff`: one queue per archive, hard links to the same files.
//!
//! The proxy persists no state file: a directory holding a destination is a volume
//! ([`DIR_RULE`]), which boots Stopped. The first `archive-info add` marks the new
//! directory before creating anything in it and unmarks it once the destination is
//! durable; removing the last destination (and `clear-vol`) marks it first
//! ([`crate::persist::voldir`]). So at start a marked directory without a destination is
//! an interrupted creation or removal, removed, and any other directory without one is
//! not the proxy's and is left alone. Every change here is atomic and durable
//! ([`crate::persist`]), and [`recover`] (run at `start`) finishes what a crash
//! interrupted: temporary files are deleted, queue directories are made to match the
//! destinations, and files left in `received/` are linked into every queue.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use walb_kernel::compress::{Codec as KCodec, CompressOpt as KCompressOpt};
use walb_kernel::meta::{parse_diff_file_name, MetaDiff, DIFF_FILE_SUFFIX};
use walb_wire::msg::{ArchiveDest, Codec, CompressOpt};

pub use crate::persist::durable_name;
use crate::persist::{self, voldir, PersistError, VolRule, TMP_SUFFIX, UNSYNCED_SUFFIX};

/// Suffix of destination files.
pub const ARCHIVE_SUFFIX: &str = ".archive";
/// The landing directory of converted wlogs.
pub const RECEIVED_DIR: &str = "received";
/// The directory of the per-archive queues.
pub const SENDTO_DIR: &str = "sendto";
/// The size record.
pub const SIZE_FILE: &str = "size";

/// What makes a proxy volume directory: a destination file (`ARCHIVE.archive`).
pub const DIR_RULE: VolRule = VolRule::Suffix(ARCHIVE_SUFFIX);

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks an archive name: it becomes a file and a directory name.
pub fn check_archive_name(name: &str) -> Result<(), String> {
    crate::persist::check_vol_name(name).map_err(|_| {
        format!(
            "archive name {name:?} must be 1 to 64 characters of letters, digits, '-', '_', '.'"
        )
    })
}

/// The wire codec as the kernel's.
pub fn kernel_codec(c: Codec) -> KCodec {
    match c {
        Codec::Gzip => KCodec::Gzip,
        Codec::Lz4 => KCodec::Lz4,
        Codec::Lzma => KCodec::Lzma,
        Codec::None => KCodec::None,
        Codec::Snappy => KCodec::Snappy,
        Codec::Zstd => KCodec::Zstd,
    }
}

/// The kernel codec as the wire's.
pub fn wire_codec(c: KCodec) -> Codec {
    match c {
        KCodec::Gzip => Codec::Gzip,
        KCodec::Lz4 => Codec::Lz4,
        KCodec::Lzma => Codec::Lzma,
        KCodec::None => Codec::None,
        KCodec::Snappy => Codec::Snappy,
        KCodec::Zstd => Codec::Zstd,
    }
}

/// One destination of a volume: where the archive listens, how diffs are compressed, and
/// how long a diff waits before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// `HOST:PORT`.
    pub addr: String,
    /// Codec and level of merged diffs.
    pub compress: KCompressOpt,
    /// Compression threads.
    pub ncpu: u32,
    /// Seconds a diff waits in the queue before it is sent.
    pub delay_s: u64,
}

impl ArchiveInfo {
    /// Validates a destination from the wire.
    pub fn from_dest(d: &ArchiveDest) -> Result<ArchiveInfo, String> {
        check_addr(&d.addr)?;
        let level = u32::try_from(d.compress.level)
            .map_err(|_| format!("compression level {} is negative", d.compress.level))?;
        let compress =
            KCompressOpt::new(kernel_codec(d.compress.codec), level).map_err(|e| e.to_string())?;
        if d.compress.ncpu == 0 {
            return Err("compression cpu count must be positive".into());
        }
        Ok(ArchiveInfo {
            addr: d.addr.clone(),
            compress,
            ncpu: d.compress.ncpu,
            delay_s: d.delay_s,
        })
    }

    /// The destination as the wire carries it.
    pub fn to_dest(&self) -> ArchiveDest {
        ArchiveDest {
            addr: self.addr.clone(),
            compress: CompressOpt {
                codec: wire_codec(self.compress.codec),
                level: i32::try_from(self.compress.level).unwrap_or(i32::MAX),
                ncpu: self.ncpu,
            },
            delay_s: self.delay_s,
        }
    }

    /// `HOST:PORT CODEC:LEVEL:NCPU DELAY` (the file content and the `archive-info get`
    /// answer).
    pub fn to_text(&self) -> String {
        format!(
            "{} {}:{}:{} {}",
            self.addr, self.compress.codec, self.compress.level, self.ncpu, self.delay_s
        )
    }

    /// Parses [`ArchiveInfo::to_text`].
    pub fn parse(s: &str) -> Result<ArchiveInfo, String> {
        let f: Vec<&str> = s.split_whitespace().collect();
        let [addr, cmpr, delay] = f[..] else {
            return Err(format!(
                "archive info {s:?}: expected \"HOST:PORT CODEC:LEVEL:NCPU DELAY\""
            ));
        };
        check_addr(addr)?;
        let (compress, ncpu) = KCompressOpt::parse_with_ncpu(cmpr).map_err(|e| e.to_string())?;
        let delay_s = delay
            .parse::<u64>()
            .map_err(|_| format!("archive info {s:?}: bad delay {delay:?}"))?;
        Ok(ArchiveInfo {
            addr: addr.to_owned(),
            compress,
            ncpu,
            delay_s,
        })
    }
}

fn check_addr(addr: &str) -> Result<(), String> {
    let ok = match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    };
    if ok && !addr.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!("archive address {addr:?} must be HOST:PORT"))
    }
}

/// The files of one proxy volume directory.
#[derive(Debug, Clone)]
pub struct VolDir {
    dir: PathBuf,
}

/// One wdiff file in a queue (or in `received/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFile {
    /// Its metadata, from the name; `data_size` is the file size.
    pub diff: MetaDiff,
    /// Where it is.
    pub path: PathBuf,
    /// When it was written.
    pub mtime: SystemTime,
}

impl VolDir {
    /// The directory `dir` (which may not exist yet).
    pub fn new(dir: PathBuf) -> VolDir {
        VolDir { dir }
    }

    /// The volume directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `received/`.
    pub fn received(&self) -> PathBuf {
        self.dir.join(RECEIVED_DIR)
    }

    /// `sendto/<archive>/`.
    pub fn queue(&self, archive: &str) -> PathBuf {
        self.dir.join(SENDTO_DIR).join(archive)
    }

    fn archive_file(&self, archive: &str) -> PathBuf {
        self.dir.join(format!("{archive}{ARCHIVE_SUFFIX}"))
    }

    /// Creates the directory, marked as unfinished until its first destination is saved
    /// ([`VolDir::save_archive`]), and `received/` and `sendto/` in it (first
    /// `archive-info add`). A directory of that name the proxy did not create is refused
    /// and left alone.
    pub fn create(&self) -> Result<(), PersistError> {
        voldir::begin(&self.dir, &DIR_RULE)?;
        persist::create_dir(&self.received())?;
        persist::create_dir(&self.dir.join(SENDTO_DIR))
    }

    /// Removes the directory and everything in it: marked, its destinations removed
    /// first, then the rest.
    pub fn remove(&self) -> Result<(), PersistError> {
        voldir::remove(&self.dir, &DIR_RULE)
    }

    /// The destinations, by archive name.
    pub fn load_archives(&self) -> Result<BTreeMap<String, ArchiveInfo>, PersistError> {
        let mut m = BTreeMap::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(m),
            Err(e) => return Err(io_err("listing", &self.dir)(e)),
        };
        for ent in rd {
            let ent = ent.map_err(io_err("listing", &self.dir))?;
            let fname = ent.file_name().to_string_lossy().into_owned();
            let Some(name) = fname.strip_suffix(ARCHIVE_SUFFIX) else {
                continue;
            };
            if check_archive_name(name).is_err() {
                continue;
            }
            let p = ent.path();
            let Some(text) = persist::read_text_opt(&p)? else {
                continue;
            };
            match ArchiveInfo::parse(&text) {
                Ok(info) => {
                    m.insert(name.to_owned(), info);
                }
                Err(e) => tracing::warn!(file = %p.display(), "ignoring a bad destination: {e}"),
            }
        }
        Ok(m)
    }

    /// Saves a destination and makes sure its queue exists; the directory is a whole
    /// volume then (the marker of [`VolDir::create`] goes).
    pub fn save_archive(&self, archive: &str, info: &ArchiveInfo) -> Result<(), PersistError> {
        persist::create_dir(&self.queue(archive))?;
        persist::write_atomic(&self.archive_file(archive), info.to_text().as_bytes())?;
        voldir::end(&self.dir)
    }

    /// Removes a destination and its queue (the file first: a crash in between leaves an
    /// orphan queue, which [`recover`] removes). The last one marks the directory first,
    /// so that a crash before [`VolDir::remove`] leaves an interrupted removal.
    pub fn delete_archive(&self, archive: &str) -> Result<(), PersistError> {
        let file = self.archive_file(archive);
        let others = DIR_RULE
            .volume_files(&self.dir)
            .map_err(io_err("listing", &self.dir))?
            .into_iter()
            .filter(|p| *p != file)
            .count();
        if others == 0 {
            voldir::mark(&self.dir)?;
        }
        persist::remove_file(&file)?;
        persist::remove_dir(&self.queue(archive))
    }

    /// The recorded volume size in logical blocks (0 before the first wlog).
    pub fn size_lb(&self) -> Result<u64, PersistError> {
        let p = self.dir.join(SIZE_FILE);
        Ok(persist::read_text_opt(&p)?
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Records the volume size.
    pub fn set_size_lb(&self, size_lb: u64) -> Result<(), PersistError> {
        persist::write_atomic(&self.dir.join(SIZE_FILE), size_lb.to_string().as_bytes())
    }
}

/// The wdiff files in `dir`, sorted by name (unparsable names are skipped with a warning).
/// A diff not yet durable (`<name>.unsynced`) is listed too, unless its durable name is
/// there as well.
pub fn list_diffs(dir: &Path) -> Result<Vec<QueuedFile>, PersistError> {
    let mut v = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    for ent in rd {
        let ent = ent.map_err(io_err("listing", dir))?;
        let file_name = ent.file_name().to_string_lossy().into_owned();
        let name = file_name
            .strip_suffix(UNSYNCED_SUFFIX)
            .unwrap_or(&file_name);
        if !name.ends_with(DIFF_FILE_SUFFIX) {
            continue;
        }
        let diff = match parse_diff_file_name(name) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "ignoring {file_name}: {e}");
                continue;
            }
        };
        let p = ent.path();
        let md = match fs::metadata(&p) {
            Ok(m) => m,
            // Sent and deleted meanwhile, or made durable under its own name.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading metadata of", &p)(e)),
        };
        v.push(QueuedFile {
            diff: diff.with_data_size(md.len()),
            path: p,
            mtime: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    v.sort_by(|a, b| a.path.cmp(&b.path));
    // `X.wdiff` sorts right before `X.wdiff.unsynced`: keep the durable one.
    v.dedup_by(|later, earlier| durable_name(&later.path) == earlier.path);
    Ok(v)
}

/// Hard-links `src` as `queue/<name>`, replacing a file of that name atomically (a diff
/// resent after a lost acknowledgement has the same name and the same content).
pub fn link_into(src: &Path, queue: &Path, name: &str) -> Result<(), PersistError> {
    link_unsynced(src, queue, name)?;
    persist::sync_dir(queue)
}

/// [`link_into`] without the directory's fsync.
fn link_unsynced(src: &Path, queue: &Path, name: &str) -> Result<(), PersistError> {
    let dst = queue.join(name);
    let tmp = persist::tmp_path(&dst);
    let _ = fs::remove_file(&tmp);
    fs::hard_link(src, &tmp).map_err(io_err("linking", &tmp))?;
    if let Err(e) = fs::rename(&tmp, &dst) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("renaming into place", &dst)(e));
    }
    Ok(())
}

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Temporary files deleted.
    pub temp_files: usize,
    /// Files of `received/` linked into the queues.
    pub relinked: usize,
    /// Files still in `received/` (start refuses then).
    pub left_in_received: usize,
    /// Queued diffs a crash caught before they were durable (deleted: the storage was
    /// never acknowledged and resends them).
    pub unsynced: usize,
}

/// Finishes what a crash interrupted (walb-tools' start-time GC): deletes temporary
/// files and queued diffs never made durable ([`UNSYNCED_SUFFIX`]), removes queues without a destination, creates missing ones, and links every
/// file of `received/` into every queue before removing it from `received/`.
pub fn recover(vd: &VolDir, archives: &[String]) -> Result<Recovered, PersistError> {
    let mut r = Recovered::default();
    persist::create_dir(&vd.received())?;
    let sendto = vd.dir.join(SENDTO_DIR);
    persist::create_dir(&sendto)?;
    r.temp_files += persist::remove_temp_files(vd.path())?;
    r.temp_files += persist::remove_temp_files(&vd.received())?;
    r.temp_files += persist::remove_temp_files(&sendto)?;
    for ent in fs::read_dir(&sendto).map_err(io_err("listing", &sendto))? {
        let ent = ent.map_err(io_err("listing", &sendto))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if !archives.contains(&name) {
            tracing::info!(queue = %ent.path().display(), "removing the queue of a deleted destination");
            persist::remove_dir(&ent.path())?;
        }
    }
    for a in archives {
        let q = vd.queue(a);
        persist::create_dir(&q)?;
        r.temp_files += persist::remove_temp_files(&q)?;
        // Never acknowledged, maybe torn: the storage resends them.
        r.unsynced += persist::remove_with_suffix(&q, UNSYNCED_SUFFIX)?;
    }
    if archives.is_empty() {
        r.left_in_received = list_diffs(&vd.received())?.len();
        return Ok(r);
    }
    for f in list_diffs(&vd.received())? {
        let Some(name) = f.path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        for a in archives {
            link_into(&f.path, &vd.queue(a), &name)?;
        }
        persist::remove_file(&f.path)?;
        r.relinked += 1;
    }
    r.left_in_received = list_diffs(&vd.received())?.len();
    Ok(r)
}

/// Registers a converted wlog, not yet durable: hard-links the temporary file `tmp` into
/// every queue as `<name>.unsynced` ([`UNSYNCED_SUFFIX`]), without an fsync, so the
/// forwards may start at once; [`sync_received`] makes it durable. On failure,
/// everything this call created is removed again (the storage resends).
pub fn register_received(
    vd: &VolDir,
    tmp: &Path,
    name: &str,
    archives: &[String],
) -> Result<(), PersistError> {
    let unsynced = format!("{name}{UNSYNCED_SUFFIX}");
    let mut linked: Vec<PathBuf> = Vec::new();
    let res = (|| {
        for a in archives {
            let q = vd.queue(a);
            link_unsynced(tmp, &q, &unsynced)?;
            linked.push(q.join(&unsynced));
        }
        Ok(())
    })();
    if res.is_err() {
        for p in &linked {
            let _ = persist::remove_file(p);
        }
        let _ = fs::remove_file(tmp);
    }
    res
}

/// Makes a diff registered by [`register_received`] durable: the file itself (`file`,
/// still at `tmp`), then each queue's `<name>.unsynced` renamed to `<name>` (one already
/// forwarded and deleted is skipped), `tmp` removed, and every queue directory synced;
/// returns its name. Until this returned, the storage keeps the logs (it has no ack), so
/// on failure the queue entries are removed again (best effort) and the storage resends.
pub fn sync_received(
    vd: &VolDir,
    file: &fs::File,
    tmp: &Path,
    name: &str,
    archives: &[String],
) -> Result<String, PersistError> {
    let unsynced = format!("{name}{UNSYNCED_SUFFIX}");
    let res = (|| {
        file.sync_all().map_err(io_err("syncing", tmp))?;
        for a in archives {
            let q = vd.queue(a);
            match fs::rename(q.join(&unsynced), q.join(name)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r.map_err(io_err("renaming into place", &q.join(name)))?,
            }
        }
        // Its own name need not be durable: a start removes a leftover temporary file.
        fs::remove_file(tmp).map_err(io_err("removing", tmp))?;
        for a in archives {
            persist::sync_dir(&vd.queue(a))?;
        }
        Ok(())
    })();
    if res.is_err() {
        for a in archives {
            let _ = persist::remove_file(&vd.queue(a).join(&unsynced));
            let _ = persist::remove_file(&vd.queue(a).join(name));
        }
        let _ = fs::remove_file(tmp);
    }
    res.map(|()| name.to_owned())
}

/// A fresh temporary path for a conversion in `received/`.
pub fn temp_in_received(vd: &VolDir) -> PathBuf {
    vd.received()
        .join(format!("recv-{:016x}{TMP_SUFFIX}", rand::random::<u64>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(addr: &str, level: i32, ncpu: u32) -> ArchiveDest {
        ArchiveDest {
            addr: addr.into(),
            compress: CompressOpt {
                codec: Codec::Zstd,
                level,
                ncpu,
            },
            delay_s: 7,
        }
    }

    #[test]
    fn archive_info_text_round_trips_and_validates() {
        let i = ArchiveInfo::from_dest(&dest("host-1:10200", 3, 2)).unwrap();
        assert_eq!(i.to_text(), "host-1:10200 zstd:3:2 7");
        // `archive-info get` prints the wire's form of it: the same text.
        assert_eq!(i.to_dest().line(), i.to_text());
        assert_eq!(ArchiveInfo::parse(&i.to_text()).unwrap(), i);
        assert_eq!(i.to_dest(), dest("host-1:10200", 3, 2));
        assert!(ArchiveInfo::from_dest(&dest("nohost", 1, 1)).is_err());
        assert!(ArchiveInfo::from_dest(&dest("h:99999", 1, 1)).is_err());
        assert!(ArchiveInfo::from_dest(&dest("h:1", -1, 1)).is_err());
        assert!(ArchiveInfo::from_dest(&dest("h:1", 99, 1)).is_err());
        assert!(ArchiveInfo::from_dest(&dest("h:1", 1, 0)).is_err());
        assert!(ArchiveInfo::parse("h:1 zstd:1:1").is_err());
        assert!(check_archive_name("a0").is_ok());
        assert!(check_archive_name("../x").is_err());
    }

    #[test]
    fn recover_relinks_received_and_cleans_queues() {
        let d = tempfile::tempdir().unwrap();
        let vd = VolDir::new(d.path().join("v"));
        vd.create().unwrap();
        let info = ArchiveInfo::parse("h:1 zstd:1:1 0").unwrap();
        vd.save_archive("a0", &info).unwrap();
        vd.save_archive("a1", &info).unwrap();
        fs::create_dir_all(vd.queue("gone")).unwrap();
        let name = "20240101000000-M--1-2.wdiff";
        fs::write(vd.received().join(name), b"x").unwrap();
        fs::write(vd.received().join("half.tmp"), b"x").unwrap();
        fs::write(vd.queue("a0").join("y.wdiff.tmp"), b"x").unwrap();
        let archives: Vec<String> = vd.load_archives().unwrap().into_keys().collect();
        let r = recover(&vd, &archives).unwrap();
        assert_eq!(r.relinked, 1);
        assert_eq!(r.left_in_received, 0);
        assert_eq!(r.temp_files, 2);
        assert!(!vd.queue("gone").exists());
        for a in ["a0", "a1"] {
            let l = list_diffs(&vd.queue(a)).unwrap();
            assert_eq!(l.len(), 1);
            assert_eq!(l[0].diff.snap_e.gid_b, 2);
        }
        assert!(list_diffs(&vd.received()).unwrap().is_empty());
    }

    /// A diff is forwardable as soon as it is registered, durable only after
    /// `sync_received`; a crash in between leaves only names the next start deletes.
    #[test]
    fn unsynced_diffs_are_sent_but_a_crash_before_their_fsync_drops_them() {
        let d = tempfile::tempdir().unwrap();
        let vd = VolDir::new(d.path().join("v"));
        vd.create().unwrap();
        let info = ArchiveInfo::parse("h:1 zstd:1:1 0").unwrap();
        vd.save_archive("a0", &info).unwrap();
        let archives = vec!["a0".to_owned()];
        recover(&vd, &archives).unwrap();
        let name = "20240101000000-M--1-2.wdiff";
        let tmp = temp_in_received(&vd);
        fs::write(&tmp, b"diff").unwrap();
        register_received(&vd, &tmp, name, &archives).unwrap();
        let l = list_diffs(&vd.queue("a0")).unwrap();
        assert_eq!(l.len(), 1, "forwardable before its fsync");
        assert!(l[0].path.to_string_lossy().ends_with(UNSYNCED_SUFFIX));
        assert_eq!(durable_name(&l[0].path), vd.queue("a0").join(name));

        // A crash now: the next start deletes it (the storage, never acknowledged, resends).
        let r = recover(&vd, &archives).unwrap();
        assert_eq!((r.unsynced, r.temp_files), (1, 1));
        assert!(list_diffs(&vd.queue("a0")).unwrap().is_empty());

        // Registered and synced: durable under its own name, the temporary file gone.
        let tmp = temp_in_received(&vd);
        fs::write(&tmp, b"diff").unwrap();
        register_received(&vd, &tmp, name, &archives).unwrap();
        let f = fs::File::open(&tmp).unwrap();
        assert_eq!(sync_received(&vd, &f, &tmp, name, &archives).unwrap(), name);
        assert!(!tmp.exists());
        let l = list_diffs(&vd.queue("a0")).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].path, vd.queue("a0").join(name));
        assert_eq!(recover(&vd, &archives).unwrap().unsynced, 0);
        assert_eq!(fs::read(&l[0].path).unwrap(), b"diff");

        // A resend while the durable copy waits: listed once, as the durable one.
        let tmp = temp_in_received(&vd);
        fs::write(&tmp, b"diff").unwrap();
        register_received(&vd, &tmp, name, &archives).unwrap();
        let l = list_diffs(&vd.queue("a0")).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].path, vd.queue("a0").join(name));

        // Forwarded and deleted before its fsync: the sync still succeeds.
        fs::remove_file(vd.queue("a0").join(format!("{name}{UNSYNCED_SUFFIX}"))).unwrap();
        fs::remove_file(vd.queue("a0").join(name)).unwrap();
        let f = fs::File::open(&tmp).unwrap();
        assert_eq!(sync_received(&vd, &f, &tmp, name, &archives).unwrap(), name);
        assert!(list_diffs(&vd.queue("a0")).unwrap().is_empty());
    }
}
