//! Hostile peers with valid cluster certificates, against real daemons: one test per
//! attack. Each sends the attack through [`walb_tests::hostile::Hostile`] (wire framing,
//! not the console's client, which validates for itself) and checks what operators rely
//! on: the refusal and its code, the daemon still serving, its memory under a stated
//! bound, and everything it stored (images, diffs, metadata: SHA-256 of every file of
//! its base directory) unchanged.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use walb_tests::hostile::{memory_kib, Hostile, Stored};
use walb_tests::{Cluster, ClusterOpts, VOL};
use walb_wire::msg::{
    ArchiveState, BackupSync, Command, DiffRange, ErrorCode, MetaDiffDto, Query, ReplSync, Request,
    SnapDto, SyncStart, VolumeState, WdiffTransfer, WlogTransfer,
};
use walb_wire::Role;

/// Resident memory a refused attack may add to a daemon, KiB.
const RSS_SLACK_KIB: u64 = 64 << 10;
/// Volume size of the test clusters (`ClusterOpts::default().ddev_mb`), logical blocks.
const SIZE_LB: u64 = 32 << 11;

/// A cluster with `vol` fully backed up (s0 Target, p0 Started, a0 Archived), as the
/// operator's commands leave it: every daemon's peers bound from the backup group.
fn backed_up() -> Result<Cluster> {
    let c = Cluster::start(ClusterOpts::default())?;
    c.init_and_full_backup()?;
    Ok(c)
}

/// What a daemon is before an attack: its memory and what it stored.
struct Before {
    name: &'static str,
    pid: u32,
    rss: u64,
    stored: Stored,
}

impl Before {
    fn of(c: &Cluster, name: &'static str) -> Result<Before> {
        let pid = c
            .pid_of(name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
        let (rss, _) = memory_kib(pid).ok_or_else(|| anyhow::anyhow!("no memory of {name}"))?;
        Ok(Before {
            name,
            pid,
            rss,
            stored: Stored::of(&c.base_of(name))?,
        })
    }

    /// The daemon serves, its memory stayed within the bound, and nothing it stored
    /// changed.
    fn unharmed(&self, c: &Cluster, h: &Hostile) -> Result<()> {
        ensure!(h.serves(self.name), "{} stopped serving", self.name);
        ensure!(
            c.pid_of(self.name) == Some(self.pid),
            "{} was restarted",
            self.name
        );
        let (rss, _) = memory_kib(self.pid).unwrap_or((u64::MAX, 0));
        ensure!(
            rss <= self.rss + RSS_SLACK_KIB,
            "{}'s memory grew from {} to {} KiB",
            self.name,
            self.rss,
            rss
        );
        Stored::of(&c.base_of(self.name))?.same_as(&self.stored)
    }
}

fn expect(e: &walb_wire::WireError, code: ErrorCode, words: &[&str]) -> Result<()> {
    ensure!(e.code == code, "want {code}, got {e}");
    for w in words {
        ensure!(e.message.contains(w), "{e:?} does not say {w:?}");
    }
    Ok(())
}

fn sync(size_lb: u64, bulk_lb: u64) -> SyncStart {
    SyncStart {
        vol: VOL.into(),
        size_lb,
        time_s: 1,
        bulk_lb,
    }
}

/// The attack that aborted walb-archive: a hash backup from the volume's own storage with
/// a bulk of 2^40 blocks. Also: a wrong size is refused without telling the image's size.
#[test]
fn a_hash_backup_with_a_huge_bulk_is_refused() -> Result<()> {
    let c = backed_up()?;
    let h = Hostile::new(&c, Role::Storage, "s0")?;
    let a0 = Before::of(&c, "a0")?;
    let e = h.refusal(
        "a0",
        Request::BackupSync(BackupSync::Hash(sync(SIZE_LB, 1 << 40))),
    )?;
    expect(&e, ErrorCode::BadRequest, &["bulk"])?;
    let e = h.refusal(
        "a0",
        Request::BackupSync(BackupSync::Hash(sync(SIZE_LB + 8, 128))),
    )?;
    expect(&e, ErrorCode::SmallerLvSize, &[&(SIZE_LB + 8).to_string()])?;
    ensure!(
        !e.message.contains(&SIZE_LB.to_string()),
        "the refusal tells the image's size: {e}"
    );
    a0.unharmed(&c, &h)
}

/// A storage certificate of an id nobody bound: no full or hash backup, whatever the
/// volume's state.
#[test]
fn an_unbound_storage_cannot_back_up_a_volume() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Storage, "s9")?;
    let h = Hostile::new(&c, Role::Storage, "s9")?;
    let a0 = Before::of(&c, "a0")?;
    for req in [
        BackupSync::Hash(sync(SIZE_LB, 128)),
        BackupSync::Full(sync(SIZE_LB, 128)),
    ] {
        let e = h.refusal("a0", Request::BackupSync(req))?;
        expect(
            &e,
            ErrorCode::Forbidden,
            &["storage/s9", "volume vol", "s0"],
        )?;
    }
    a0.unharmed(&c, &h)?;
    // Even once the operator re-initialises the volume (SyncReady), it stays s0's.
    c.exec_ok(&["stop", "a0", VOL])?;
    c.exec_ok(&["reset", "a0", VOL])?;
    let a0 = Before::of(&c, "a0")?;
    let e = h.refusal(
        "a0",
        Request::BackupSync(BackupSync::Full(sync(SIZE_LB, 128))),
    )?;
    expect(&e, ErrorCode::Forbidden, &["storage/s9"])?;
    a0.unharmed(&c, &h)
}

/// An archive certificate of an id nobody set up asks for a resync into a0: refused
/// before anything is chosen (the audit saw `Accepted` + `Resync`).
#[test]
fn an_unbound_archive_cannot_replicate_into_a_volume() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Archive, "a9")?;
    let h = Hostile::new(&c, Role::Archive, "a9")?;
    let a0 = Before::of(&c, "a0")?;
    let e = h.refusal(
        "a0",
        Request::Replicate(ReplSync {
            vol: VOL.into(),
            archive_uuid: [9; 16],
            do_resync: true,
        }),
    )?;
    expect(&e, ErrorCode::Forbidden, &["archive/a9", "volume vol"])?;
    a0.unharmed(&c, &h)
}

/// Only the volume's storage reads its latest snapshot at the archive.
#[test]
fn an_unbound_storage_cannot_read_latest_snapshots() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Storage, "s9")?;
    let gather = || {
        Request::BackupSync(BackupSync::GatherLatestSnap {
            vols: vec![VOL.into()],
        })
    };
    let s0 = Hostile::new(&c, Role::Storage, "s0")?;
    match s0.open("a0", gather())? {
        Ok((_, walb_wire::Reply::Snapshots(s))) if s.len() == 1 => {}
        other => bail!("s0's own latest snapshot: {other:?}"),
    }
    let h = Hostile::new(&c, Role::Storage, "s9")?;
    let a0 = Before::of(&c, "a0")?;
    let e = h.refusal("a0", gather())?;
    expect(&e, ErrorCode::Forbidden, &["storage/s9", "volume vol"])?;
    a0.unharmed(&c, &h)
}

fn diff_dto(b: u64, e: u64) -> MetaDiffDto {
    MetaDiffDto {
        range: DiffRange {
            snap_b: SnapDto { gid_b: b, gid_e: b },
            snap_e: SnapDto { gid_b: e, gid_e: e },
        },
        mergeable: false,
        comp_diff: false,
        timestamp_s: 1,
        size: 0,
    }
}

/// A proxy certificate of an id the volume does not know sends a wdiff: refused, and a
/// storage certificate may not send one either.
#[test]
fn an_unbound_proxy_cannot_send_wdiffs() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Proxy, "p9")?;
    let latest = c
        .restorable_gids("a0")?
        .into_iter()
        .max()
        .unwrap_or_default();
    let t = WdiffTransfer {
        vol: VOL.into(),
        uuid: [0; 16],
        size_lb: SIZE_LB,
        diff: diff_dto(latest, latest + 1),
    };
    let h = Hostile::new(&c, Role::Proxy, "p9")?;
    let a0 = Before::of(&c, "a0")?;
    let e = h.refusal("a0", Request::WdiffTransfer(t.clone()))?;
    expect(&e, ErrorCode::Forbidden, &["proxy/p9", "volume vol", "p0"])?;
    let s0 = Hostile::new(&c, Role::Storage, "s0")?;
    let e = s0.refusal("a0", Request::WdiffTransfer(t))?;
    expect(&e, ErrorCode::Forbidden, &["storage"])?;
    a0.unharmed(&c, &h)
}

/// A storage certificate of an id the volume does not know ships wlogs to p0.
#[test]
fn an_unbound_storage_cannot_ship_wlogs() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Storage, "s9")?;
    let h = Hostile::new(&c, Role::Storage, "s9")?;
    let p0 = Before::of(&c, "p0")?;
    let e = h.refusal(
        "p0",
        Request::WlogTransfer(WlogTransfer {
            vol: VOL.into(),
            uuid: [0; 16],
            pbs: 4096,
            salt: 0,
            size_lb: SIZE_LB,
            log_size_pb: 16,
        }),
    )?;
    expect(
        &e,
        ErrorCode::Forbidden,
        &["storage/s9", "volume vol", "s0"],
    )?;
    p0.unharmed(&c, &h)
}

/// A daemon dialling a peer pins the id it expects: a replication whose destination
/// address answers with another archive's certificate is refused, naming both.
#[test]
fn a_daemon_dialling_a_peer_pins_its_id() -> Result<()> {
    let c = Cluster::start(ClusterOpts {
        archives: 2,
        ..ClusterOpts::default()
    })?;
    c.init_and_full_backup()?;
    c.exec_ok(&["init-archive", "a1", VOL])?;
    c.exec_ok(&["bind", "a1", VOL, "archive", "a0"])?;
    let op = Hostile::new(&c, Role::Operator, "console")?;
    let a1 = op.addr("a1")?;
    let e = op.refusal(
        "a0",
        Request::Command(Command::Replicate(walb_wire::msg::ReplicateCommand {
            vol: VOL.into(),
            until: walb_wire::msg::MergeUntil::SizeMib(0),
            dest: a1.to_string(),
            dest_id: "a7".into(),
            do_resync: false,
            dont_merge: false,
            compress: None,
            merge_size_max: None,
            bulk_lb: None,
        })),
    )?;
    expect(
        &e,
        ErrorCode::Internal,
        &["archive/a1", "expected archive/a7"],
    )?;
    ensure!(c.state("a1")? == "SyncReady", "a1 was touched");
    Ok(())
}

/// Volume names that climb out of the base directory, or name it, are refused by every
/// daemon before anything is created.
#[test]
fn volume_names_that_climb_out_are_refused() -> Result<()> {
    let c = backed_up()?;
    let h = Hostile::new(&c, Role::Operator, "console")?;
    let before: Vec<Before> = ["s0", "p0", "a0"]
        .into_iter()
        .map(|n| Before::of(&c, n))
        .collect::<Result<_>>()?;
    for node in ["s0", "p0", "a0"] {
        for vol in ["../../etc", "/etc", "..", ".", "", "a/b"] {
            let e = h.refusal(
                node,
                Request::Command(Command::InitVol {
                    vol: vol.into(),
                    wdev_path: None,
                }),
            )?;
            expect(&e, ErrorCode::BadRequest, &["volume name"])?;
            let e = h.refusal(node, Request::Query(Query::State { vol: vol.into() }))?;
            expect(&e, ErrorCode::BadRequest, &["volume name"])?;
        }
    }
    for b in &before {
        b.unharmed(&c, &h)?;
    }
    Ok(())
}

/// Frames no client sends: too long, of an unknown kind, garbage postcard. Each is
/// refused on its stream and the daemon serves on.
#[test]
fn malformed_frames_are_refused_and_the_daemon_serves() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Viewer, "v9")?;
    let h = Hostile::new(&c, Role::Viewer, "v9")?;
    let a0 = Before::of(&c, "a0")?;
    // A message frame claiming 4 GiB.
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    if let Some(e) = h.raw("a0", &huge)? {
        expect(&e, ErrorCode::TooLarge, &[])?;
    }
    // An unknown frame kind.
    let mut unknown = vec![9u8];
    unknown.extend_from_slice(&4u32.to_le_bytes());
    unknown.extend_from_slice(&[0; 4]);
    if let Some(e) = h.raw("a0", &unknown)? {
        ensure!(e.code != ErrorCode::Forbidden, "{e}");
    }
    // A message frame of garbage.
    let garbage = [0xffu8; 64];
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(garbage.len() as u32).to_le_bytes());
    frame.extend_from_slice(&garbage);
    if let Some(e) = h.raw("a0", &frame)? {
        ensure!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::Corrupt),
            "{e}"
        );
    }
    a0.unharmed(&c, &h)
}

/// 60,000 garbage UDP datagrams at a daemon's port: it serves on, with its memory.
#[test]
fn garbage_datagrams_leave_the_daemon_serving() -> Result<()> {
    let c = backed_up()?;
    let h = Hostile::new(&c, Role::Operator, "console")?;
    let a0 = Before::of(&c, "a0")?;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let to = h.addr("a0")?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = [0u8; 1200];
    for i in 0..60_000u32 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        // Long-header-looking packets now and then, to reach the handshake parser.
        if i % 3 == 0 {
            buf[0] = 0xc0 | (buf[0] & 0x0f);
        }
        let _ = sock.send_to(&buf[..(i as usize % 1200) + 1], to);
    }
    std::thread::sleep(Duration::from_millis(500));
    a0.unharmed(&c, &h)
}

/// Every image-sized read takes a foreground slot: with both of a0's slots held by
/// virtual scans a reader does not drain, a viewer's bhash waits in line (told it is
/// first, behind 2 of 2 running tasks), an operator's scan behind it; the status lists
/// both. A peer cannot fill the line beyond its share (`--fg-queue-per-peer 3`: its
/// fourth waiting request is refused `busy`), and once the scans end the first bhash in
/// line runs.
#[test]
fn image_sized_reads_take_foreground_slots() -> Result<()> {
    // An image of random bytes: a scan of it outgrows the stream window of a reader that
    // does not read, and so stays running.
    let c = Cluster::start(ClusterOpts {
        fill: Some(|_, ddev| {
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut buf = vec![0u8; 32 << 20];
            for b in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            std::fs::write(ddev, &buf)?;
            Ok(())
        }),
        archive_args: vec!["--fg-queue-per-peer".into(), "3".into()],
        ..ClusterOpts::default()
    })?;
    c.init_and_full_backup()?;
    c.issue(Role::Viewer, "v9")?;
    let op = Hostile::new(&c, Role::Operator, "console")?;
    let viewer = Hostile::new(&c, Role::Viewer, "v9")?;
    let gid = c
        .restorable_gids("a0")?
        .into_iter()
        .max()
        .unwrap_or_default();
    let scan = || {
        Request::Command(Command::VirtFullScan {
            vol: VOL.into(),
            gid,
            bulk_lb: Some(128),
        })
    };
    let bhash = || {
        Request::Query(Query::BlockHash {
            vol: VOL.into(),
            gid,
        })
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        match op.open("a0", scan())? {
            Ok((call, walb_wire::Reply::Accepted)) => held.push(call),
            other => bail!("a virtual scan: {other:?}"),
        }
    }
    let mut line = Vec::new();
    for ahead in 0..3 {
        match viewer.queued("a0", bhash())? {
            Ok((call, note)) => {
                ensure!(
                    (note.ahead, note.running, note.slots) == (ahead, 2, 2)
                        && note.queue == "archive a0",
                    "bhash {ahead}: {note:?}"
                );
                line.push(call);
            }
            Err(e) => bail!("bhash {ahead} refused: {e:?}"),
        }
    }
    let e = viewer.refusal("a0", bhash())?;
    expect(&e, ErrorCode::Busy, &["--fg-queue-per-peer", "v9"])?;
    let (_scan, note) = match op.queued("a0", scan())? {
        Ok(x) => x,
        Err(e) => bail!("another identity's scan: {e:?}"),
    };
    ensure!(
        note.ahead == 3,
        "the scan is behind the 3 bhashes: {note:?}"
    );
    let status = match op.open("a0", Request::Query(Query::Status { vol: None }))? {
        Ok((_, walb_wire::Reply::Status(s))) => s.lines(),
        other => bail!("status: {other:?}"),
    };
    ensure!(
        status
            .iter()
            .any(|l| l == "foreground 2/2 running, 4 queued")
            && status
                .iter()
                .any(|l| l.starts_with("queued vol bhash by viewer/v9: 0 ahead")),
        "the status lists what waits: {status:?}"
    );
    for mut call in held {
        call.receiver.stop();
        call.sender.reset();
    }
    let mut first = line.remove(0);
    let r = viewer.run(async {
        tokio::time::timeout(Duration::from_secs(30), first.receiver.reply())
            .await
            .map_err(|_| anyhow::anyhow!("the first bhash in line got no slot in 30 s"))?
            .map_err(anyhow::Error::from)
    })?;
    ensure!(
        matches!(r, walb_wire::Reply::Hash(_)),
        "bhash after the scans ended: {r:?}"
    );
    Ok(())
}

/// A wlog transfer from the volume's own storage whose first pack claims 65535 blocks of
/// 64 KiB (4 GiB) and then sends nothing: the proxy reserves nothing for it (its virtual
/// memory does not jump by the claim) and nothing is queued.
#[test]
fn a_pack_claiming_gigabytes_reserves_nothing() -> Result<()> {
    use walb_kernel::block::Pbs;
    use walb_kernel::logpack::{LogPackHeader, LogRecord};
    let c = backed_up()?;
    // The real storage stops shipping, so that the volume is free for the attack.
    c.exec_ok(&["stop", "s0", VOL])?;
    let h = Hostile::new(&c, Role::Storage, "s0")?;
    let p0 = Before::of(&c, "p0")?;
    let (_, vm_before) = memory_kib(p0.pid).unwrap_or_default();
    let pbs = Pbs::new(65536)?;
    let mut hdr = LogPackHeader::new(pbs, 0, 0);
    let per_record_pb = 512u16; // 65535 logical blocks in 64 KiB blocks, rounded up.
    while hdr.total_io_size <= 65535 - per_record_pb {
        let lsid_local = 1 + hdr.total_io_size;
        hdr.records.push(LogRecord {
            checksum: 0,
            flags: walb_kernel::logpack::FLAG_EXIST,
            offset: 0,
            io_size: 65535,
            lsid_local,
            lsid: u64::from(lsid_local),
        });
        hdr.total_io_size += per_record_pb;
    }
    let block = hdr.to_block();
    let req = Request::WlogTransfer(WlogTransfer {
        vol: VOL.into(),
        uuid: [0; 16],
        pbs: 65536,
        salt: 0,
        size_lb: SIZE_LB,
        log_size_pb: 65536,
    });
    let (mut call, reply) = match h.open("p0", req)? {
        Ok(x) => x,
        Err(e) => bail!("the storage's own transfer was refused: {e}"),
    };
    ensure!(reply == walb_wire::Reply::Accepted, "{reply:?}");
    h.run(async {
        call.sender.chunk(&block).await?;
        Ok(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let (_, vm) = memory_kib(p0.pid).unwrap_or((0, u64::MAX));
    ensure!(
        vm < vm_before + (1 << 20),
        "p0's virtual memory grew from {vm_before} to {vm} KiB for a pack it never got"
    );
    h.run(async {
        call.sender.reset();
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(500));
    p0.unharmed(&c, &h)
}

/// A viewer's subscription of 16 Mi empty volume names (16 MiB of postcard; the audit
/// saw it decode to ~400 MiB held for the subscription's life): refused from its frame
/// header, before anything is read or decoded; the daemon's memory stays.
#[test]
fn a_huge_subscription_is_refused_before_it_is_read() -> Result<()> {
    use walb_wire::msg::{Message, Subscribe};
    let c = backed_up()?;
    c.issue(Role::Viewer, "v9")?;
    let h = Hostile::new(&c, Role::Viewer, "v9")?;
    let a0 = Before::of(&c, "a0")?;
    let msg = Message::Request(Request::Subscribe(Subscribe {
        vols: vec![String::new(); 16 << 20],
    }));
    let payload = postcard::to_stdvec(&msg)?;
    let mut frame = vec![1u8];
    frame.extend_from_slice(&u32::try_from(payload.len())?.to_le_bytes());
    frame.extend_from_slice(&payload);
    for _ in 0..3 {
        if let Some(e) = h.raw("a0", &frame)? {
            expect(&e, ErrorCode::TooLarge, &[])?;
        }
    }
    a0.unharmed(&c, &h)
}

/// Subscriptions are capped per identity: the ninth a viewer holds is refused `busy`,
/// naming the cap; the daemon serves everyone else.
#[test]
fn subscriptions_are_capped_per_identity() -> Result<()> {
    use walb_wire::msg::Subscribe;
    let c = backed_up()?;
    c.issue(Role::Viewer, "v9")?;
    let h = Hostile::new(&c, Role::Viewer, "v9")?;
    let a0 = Before::of(&c, "a0")?;
    let sub = || {
        Request::Subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
    };
    let mut held = Vec::new();
    let refused = loop {
        match h.open("a0", sub())? {
            Ok((call, walb_wire::Reply::Accepted)) => held.push(call),
            Ok((_, r)) => bail!("a subscription answered {r:?}"),
            Err(e) => break e,
        }
        ensure!(
            held.len() <= 64,
            "64 subscriptions of one viewer were all accepted"
        );
    };
    expect(&refused, ErrorCode::Busy, &["subscriptions"])?;
    ensure!(
        held.len() == 8,
        "{} subscriptions held before the refusal",
        held.len()
    );
    a0.unharmed(&c, &h)?;
    // Once they end, the viewer may subscribe again.
    drop(held);
    let t0 = std::time::Instant::now();
    loop {
        match h.open("a0", sub())? {
            Ok(_) => return Ok(()),
            Err(e) if e.code == ErrorCode::Busy && t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => bail!("after the subscriptions ended: {e}"),
        }
    }
}

/// Two silent full backups from the volume's own storage take both of a0's foreground
/// slots, and a third waits in line for one; after the step timeout (2 s here) both are
/// rolled back — volumes SyncReady again, partial images removed, slots free — the third
/// gets its slot and, silent too, loses it the same way; the real storage's full backup
/// goes through.
#[test]
fn silent_peers_lose_their_slots_at_the_step_timeout() -> Result<()> {
    let c = Cluster::start(ClusterOpts {
        archive_args: vec!["--step-timeout".into(), "2".into()],
        ..ClusterOpts::default()
    })?;
    let wdev = c.wdev_path().display().to_string();
    c.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
    for v in [VOL, "vol2", "vol3"] {
        c.exec_ok(&["init-archive", "a0", v])?;
        c.exec_ok(&["bind", "a0", v, "storage", "s0"])?;
    }
    let h = Hostile::new(&c, Role::Storage, "s0")?;
    let a0 = Before::of(&c, "a0")?;
    let full = |v: &str| {
        Request::BackupSync(BackupSync::Full(SyncStart {
            vol: v.into(),
            ..sync(SIZE_LB, 128)
        }))
    };
    let mut silent = Vec::new();
    for v in [VOL, "vol2"] {
        match h.open("a0", full(v))? {
            Ok((call, walb_wire::Reply::Accepted)) => silent.push(call),
            other => bail!("a full backup of {v}: {other:?}"),
        }
    }
    let (mut third, note) = match h.queued("a0", full("vol3"))? {
        Ok(x) => x,
        Err(e) => bail!("a third full backup: {e:?}"),
    };
    ensure!(
        (note.ahead, note.running, note.slots) == (0, 2, 2),
        "the third waits first in line: {note:?}"
    );
    let op = Hostile::new(&c, Role::Operator, "console")?;
    let e = op.refusal(
        "a0",
        Request::Command(Command::VirtFullScan {
            vol: VOL.into(),
            gid: 0,
            bulk_lb: None,
        }),
    );
    // Both slots are held (a scan of a SyncReady volume would be refused otherwise).
    ensure!(
        matches!(&e, Ok(e) if e.code == ErrorCode::Busy || e.code == ErrorCode::WrongState),
        "{e:?}"
    );
    // The silent two lose their slots at the step timeout: the third gets one.
    let r = h.run(async {
        tokio::time::timeout(Duration::from_secs(30), third.receiver.reply())
            .await
            .map_err(|_| anyhow::anyhow!("the third backup got no slot in 30 s"))?
            .map_err(anyhow::Error::from)
    })?;
    ensure!(r == walb_wire::Reply::Accepted, "the third backup: {r:?}");
    let t0 = std::time::Instant::now();
    while [VOL, "vol2", "vol3"]
        .iter()
        .map(|v| op_state(&op, v))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .any(|s| *s != VolumeState::Archive(ArchiveState::SyncReady))
    {
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "the silent backups still hold a0 after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Rolled back: nothing of the partial images is left.
    a0.unharmed(&c, &h)?;
    drop(silent);
    drop(third);
    c.exec_ok(&["stop", "s0", VOL])?;
    let out = c.exec_ok(&["full-backup", "s0", VOL])?;
    let gid = walb_tests::last_number(&out).unwrap_or_default();
    c.assert_restore_equals_device(gid)
}

fn op_state(op: &Hostile, vol: &str) -> Result<VolumeState> {
    match op.open("a0", Request::Query(Query::State { vol: vol.into() }))? {
        Ok((_, walb_wire::Reply::State(s))) => Ok(s),
        other => bail!("state of {vol}: {other:?}"),
    }
}

/// 512 streams each announcing a 16 MiB message frame and sending nothing more: each is
/// refused (`too-large`, from its header) or capped (`busy`), and the daemon's virtual
/// memory does not follow the announcements (the audit saw +9.3 GiB).
#[test]
fn announced_frames_reserve_nothing() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Viewer, "v9")?;
    let h = Hostile::new(&c, Role::Viewer, "v9")?;
    let a0 = Before::of(&c, "a0")?;
    let (_, vm_before) = memory_kib(a0.pid).unwrap_or_default();
    // Two connections of 256 streams each (QUIC's cap per connection).
    let conns = [h.fresh_connection("a0")?, h.fresh_connection("a0")?];
    let mut head = vec![1u8];
    head.extend_from_slice(&(16u32 << 20).to_le_bytes());
    let mut open = Vec::new();
    let mut refused = 0;
    h.run(async {
        for (_, peer) in &conns {
            for _ in 0..256 {
                let Ok(Ok(mut call)) =
                    tokio::time::timeout(Duration::from_secs(1), peer.call_raw()).await
                else {
                    break;
                };
                if call.sender.write_raw(&head).await.is_ok() {
                    open.push(call);
                }
            }
        }
        for call in open.iter_mut() {
            if let Ok(Err(walb_wire::Error::Remote(e))) =
                tokio::time::timeout(Duration::from_millis(50), call.receiver.msg()).await
            {
                if matches!(e.code, ErrorCode::TooLarge | ErrorCode::Busy) {
                    refused += 1;
                }
            }
        }
        Ok(())
    })?;
    let (_, vm) = memory_kib(a0.pid).unwrap_or((0, u64::MAX));
    ensure!(
        vm < vm_before + (1 << 20),
        "a0's virtual memory grew from {vm_before} to {vm} KiB"
    );
    ensure!(refused > 0, "no stream was refused");
    drop(open);
    a0.unharmed(&c, &h)
}

/// Connections per identity are capped: a viewer's 65th connection is closed with a
/// reason naming the cap, while other identities still get in.
#[test]
fn connections_are_capped_per_identity() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Viewer, "v9")?;
    let h = Hostile::new(&c, Role::Viewer, "v9")?;
    let a0 = Before::of(&c, "a0")?;
    let mut held = Vec::new();
    let mut closed = None;
    for _ in 0..80 {
        match h.fresh_connection("a0") {
            Ok((node, peer)) => {
                // A connection over the cap is closed right after the handshake.
                let r = h.run(async { Ok(peer.request(Request::Query(Query::Version)).await) })?;
                match r {
                    Ok(_) => held.push((node, peer)),
                    Err(e) => {
                        closed = Some(e.to_string());
                        break;
                    }
                }
            }
            Err(e) => {
                closed = Some(format!("{e:#}"));
                break;
            }
        }
    }
    let why = closed.ok_or_else(|| anyhow::anyhow!("80 connections of one viewer were kept"))?;
    ensure!(
        held.len() == 64,
        "{} connections before the cap",
        held.len()
    );
    ensure!(why.contains("connections"), "the closing reason: {why}");
    // The operator still gets in.
    let op = Hostile::new(&c, Role::Operator, "console")?;
    ensure!(
        op.serves("a0"),
        "a0 refuses everyone once a viewer is at its cap"
    );
    drop(held);
    a0.unharmed(&c, &op)
}

/// The connection cap does not bite an operator's script: 80 `walb-console --exec` runs
/// in a row (each a connection, faster than the daemons' idle timeout) all succeed, as
/// each run closes its connections when it ends.
#[test]
fn a_script_of_many_console_runs_stays_under_the_connection_cap() -> Result<()> {
    let c = backed_up()?;
    for i in 0..80 {
        c.exec_ok(&["snapshot", "s0", "vol", "a0"])
            .with_context(|| format!("run {i} of 80"))?;
    }
    Ok(())
}

/// `ca revoke --id` and a SIGHUP: the revoked viewer's live connection is closed, its
/// next handshake fails, and the operator's connection stays.
#[test]
fn a_revoked_certificate_is_cut_off_at_reload() -> Result<()> {
    let c = backed_up()?;
    c.issue(Role::Viewer, "v9")?;
    let h = Hostile::new(&c, Role::Viewer, "v9")?;
    let op = Hostile::new(&c, Role::Operator, "console")?;
    let (_vn, viewer_conn) = h.fresh_connection("a0")?;
    let (_on, op_conn) = op.fresh_connection("a0")?;
    let certs = c.path().join("certs");
    let out = walb_tests::bin("walb-console")
        .args(["ca", "revoke", "--id", "viewer/v9", "--ca-dir"])
        .arg(&certs)
        .output()?;
    walb_tests::check(&out, "ca revoke")?;
    let pid = c
        .pid_of("a0")
        .ok_or_else(|| anyhow::anyhow!("a0 is not running"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let t0 = std::time::Instant::now();
    while viewer_conn.connection().close_reason().is_none() {
        ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "the revoked viewer's connection is still open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        op_conn.connection().close_reason().is_none(),
        "the operator's connection was closed too"
    );
    ensure!(
        h.fresh_connection("a0").is_err(),
        "a revoked viewer got in again"
    );
    ensure!(op.serves("a0"), "a0 stopped serving");
    Ok(())
}
