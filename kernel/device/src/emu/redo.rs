//! Redo at start: the log packs after the superblock's written lsid are replayed onto the
//! data device (an emulator that was killed loses nothing it acknowledged), and the ring
//! is written through with the packs' headers checked.

use walb_kernel::block::LBS;
use walb_kernel::error::{Error, IoContext, Location, Result};
use walb_kernel::ldev::{LdevEnd, LdevReader, SuperBlock, SUPER_OFFSET};
use walb_kernel::logpack::{LogPack, LogPackHeader, RecordKind};

use super::disk::{Disk, DiskReader};
use super::writer::stale_window_pb;
use super::RedoReport;

pub(super) fn header_valid(ldev: &dyn Disk, sb: &SuperBlock, lsid: u64) -> bool {
    let mut b = vec![0u8; sb.pbs.bytes()];
    ldev.read_at(&mut b, sb.offset_of_lsid(lsid)).is_ok()
        && LogPackHeader::parse(&b, sb.pbs, sb.salt, Some(lsid)).is_ok_and(|h| h.n_records() > 0)
}

pub(super) fn write_ring(ldev: &dyn Disk, sb: &SuperBlock, lsid: u64, bytes: &[u8]) -> Result<()> {
    let pbs = sb.pbs.bytes();
    let mut done = 0usize;
    let mut l = lsid;
    while done < bytes.len() {
        let room = ((sb.ring_buffer_size - l % sb.ring_buffer_size) as usize).saturating_mul(pbs);
        let n = room.min(bytes.len() - done);
        let off = sb.offset_of_lsid(l);
        ldev.write_at(&bytes[done..done + n], off)
            .ctx(|| format!("writing lsid {l} at byte offset {off} of the log device"))?;
        done += n;
        l += (n / pbs) as u64;
    }
    Ok(())
}

/// Redo at open (walb-driver.md §5.3); updates and syncs the superblock.
pub(super) fn redo(
    ldev: &dyn Disk,
    ddev: &dyn Disk,
    sb: &mut SuperBlock,
    limit_pb: u64,
) -> Result<RedoReport> {
    let begin = sb.written_lsid;
    let size_lb = sb.device_size;
    let mut rep = RedoReport {
        begin,
        end: begin,
        ..Default::default()
    };
    let reader = DiskReader(ldev);
    let mut rd = LdevReader::new(&reader, sb.clone(), begin, LdevEnd::Scan, true)?;
    let mut last: Option<LogPack> = None;
    while let Some(p) = rd.next_pack()? {
        for (i, r) in p.header.records.iter().enumerate() {
            let kind = r.kind();
            if kind == RecordKind::Padding {
                continue;
            }
            if r.offset
                .checked_add(u64::from(r.io_size))
                .is_none_or(|e| e > size_lb)
            {
                return Err(Error::corrupt(
                    "log record",
                    Location::Record {
                        index: i,
                        pack: p.header.logpack_lsid,
                        lsid: true,
                    },
                    format!(
                        "IO of {} blocks at {} is past the device end {size_lb}",
                        r.io_size, r.offset
                    ),
                ));
            }
            let off = r.offset * u64::from(LBS);
            if kind == RecordKind::Discard {
                ddev.discard(off, u64::from(r.io_size) * u64::from(LBS))
                    .ctx(|| format!("redo: discarding at {off} on the data device"))?;
            } else if let Some(d) = p.record_data(i) {
                ddev.write_at(&d, off)
                    .ctx(|| format!("redo: writing at {off} on the data device"))?;
            }
        }
        rep.packs += 1;
        last = Some(p);
    }
    rep.end = rd.end_lsid();
    if let Some(mut p) = last {
        // A torn last pack comes back cut: rewrite its header in place.
        let lsid = p.header.logpack_lsid;
        let mut on_disk = vec![0u8; sb.pbs.bytes()];
        ldev.read_at(&mut on_disk, sb.offset_of_lsid(lsid))
            .ctx(|| format!("reading the header at lsid {lsid}"))?;
        let cut = p.header.to_block();
        if cut != on_disk {
            write_ring(ldev, sb, lsid, &cut)?;
            ldev.sync().ctx(|| "syncing the log device".into())?;
            rep.cut = true;
        }
    }
    // Packs written after the end but never flushed may have survived out of order: zero
    // the blocks a later pack could end on, without touching logs still in the ring.
    let used = rep.end - sb.oldest_lsid;
    if used < sb.ring_buffer_size {
        let window = stale_window_pb(limit_pb, sb.pbs).min(sb.ring_buffer_size - used);
        let zero = vec![0u8; sb.pbs.bytes() * window.min(256) as usize];
        let mut l = rep.end;
        while l < rep.end + window {
            let n = (rep.end + window - l).min(window.min(256));
            let n = n.min(sb.ring_buffer_size - l % sb.ring_buffer_size);
            write_ring(ldev, sb, l, &zero[..n as usize * sb.pbs.bytes()])?;
            l += n;
        }
    }
    ddev.sync().ctx(|| "syncing the data device".into())?;
    sb.written_lsid = rep.end;
    let block = sb.to_block();
    ldev.write_at(&block, SUPER_OFFSET)
        .ctx(|| "writing the superblock".into())?;
    ldev.sync().ctx(|| "syncing the log device".into())?;
    Ok(rep)
}
