//! The listing of walb-tools' `wdiff-show`, byte for byte.
//!
//! ```text
//! wdiff_h:
//!   checksum: 2141c803
//!   version: 2
//!   type: sorted
//!   uuid: f9e2cec9bb71e9a4f3f898b654ea6cb9
//! wdiff_sorted_rec:\t596\t7\tnone\t0\t3584\t4e3333ea\t--
//! ```
//!
//! Sorted records print `address blocks codec data_offset data_size checksum flags`;
//! indexed records print `address blocks codec data_offset data_size orig_blocks io_offset
//! io_checksum rec_checksum flags`; flags are `--`, `Z-` (all-zero) or `-D` (discard).
//! Unlike `wdiff-show` (which checks data only with `-csum`), [`write_listing`] verifies
//! every checksum, and stops with the error at the first problem (the lines before it
//! are already written).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{
    IndexedDiffReader, IndexedRecord, SortedDiffReader, SortedRecord, WdiffHeader, WdiffKind,
};
use crate::error::{IoContext, Result};

/// The `wdiff_h:` block for a header whose stored checksum is `checksum`.
pub fn header_text(header: &WdiffHeader, checksum: u32) -> String {
    format!(
        "wdiff_h:\n  checksum: {checksum:08x}\n  version: {}\n  type: {}\n  uuid: {}\n",
        super::WDIFF_VERSION,
        header.kind.name(),
        header.uuid_hex()
    )
}

/// One `wdiff_sorted_rec:` line, newline included.
pub fn sorted_record_line(rec: &SortedRecord) -> String {
    format!(
        "wdiff_sorted_rec:\t{}\t{}\t{}\t{}\t{}\t{:08x}\t{}\n",
        rec.addr,
        rec.blocks,
        rec.codec.name(),
        rec.data_offset,
        rec.data_size,
        rec.checksum,
        rec.kind.show_flags()
    )
}

/// One `wdiff_indexed_rec:` line, newline included.
pub fn indexed_record_line(rec: &IndexedRecord) -> String {
    format!(
        "wdiff_indexed_rec:\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:08x}\t{:08x}\t{}\n",
        rec.addr,
        rec.blocks,
        rec.codec.name(),
        rec.data_offset,
        rec.data_size,
        rec.orig_blocks,
        rec.io_offset,
        rec.io_checksum,
        rec.rec_checksum,
        rec.kind.show_flags()
    )
}

/// Lists a sorted wdiff read from `r` (positioned at the start of the file).
pub fn show_sorted<R: Read>(r: R, out: &mut impl Write) -> Result<()> {
    let mut rd = SortedDiffReader::new(r)?;
    let ctx = || "writing the wdiff listing".to_string();
    out.write_all(header_text(rd.header(), rd.header_checksum()).as_bytes())
        .ctx(ctx)?;
    while let Some((rec, _)) = rd.next_raw()? {
        out.write_all(sorted_record_line(&rec).as_bytes())
            .ctx(ctx)?;
    }
    Ok(())
}

/// Lists an indexed wdiff held by `r`; image checksums are verified after the index.
pub fn show_indexed<R: Read + Seek>(r: R, out: &mut impl Write) -> Result<()> {
    let mut rd = IndexedDiffReader::new(r)?;
    let ctx = || "writing the wdiff listing".to_string();
    let mut text = header_text(rd.header(), rd.header_checksum());
    for rec in rd.records() {
        text.push_str(&indexed_record_line(rec));
    }
    out.write_all(text.as_bytes()).ctx(ctx)?;
    rd.verify_images()
}

/// Lists any wdiff held by `r` (positioned at the start of the file).
pub fn show<R: Read + Seek>(mut r: R, out: &mut impl Write) -> Result<()> {
    let (h, _) = WdiffHeader::read_from(&mut r)?;
    r.seek(SeekFrom::Start(0))
        .ctx(|| "seeking back to the wdiff header".to_string())?;
    match h.kind {
        WdiffKind::Sorted => show_sorted(r, out),
        WdiffKind::Indexed => show_indexed(r, out),
    }
}

/// Lists the wdiff at `path` exactly as `wdiff-show PATH` prints it.
pub fn write_listing(path: impl AsRef<Path>, out: &mut impl Write) -> Result<()> {
    let path = path.as_ref();
    let f = File::open(path).ctx(|| format!("opening wdiff {}", path.display()))?;
    show(BufReader::with_capacity(1 << 20, f), out)
}
