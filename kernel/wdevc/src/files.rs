//! The file tools of wdevc: wlog, wdiff and ldev files.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use walb_device::image::FileTarget;
use walb_device::writeback::WritebackFile;
use walb_kernel::block::{Pbs, LBS};
use walb_kernel::compress::CompressOpt;
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::diff::convert::{
    convert_wlog, merge_stored_to_sorted, merge_to_sorted, ConvertOpt, DEFAULT_MAX_IO_BLOCKS,
};
use walb_kernel::diff::merge::{DiffMerger, DiffStream, MergeStream};
use walb_kernel::diff::source::source_stream;
use walb_kernel::diff::twopass::convert_wlog_file;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::gen::{DataKind, WlogGen as Generator};
use walb_kernel::ldev::{LdevEnd, LdevReader, ReadAt, SuperBlock, SUPER_OFFSET};
use walb_kernel::wdiff::{WdiffKind, WdiffReader};
use walb_kernel::wlog::{write_listing, WlogHeader, WlogReader, WlogWriter, NO_END_LSID};

/// A usage error detected after argument parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Parses a size with an optional k/m/g/t/p suffix (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                'p' => 50,
                _ => return Err(format!("unknown size suffix {c:?} in {s:?}")),
            };
            (&s[..i], 1u64 << shift)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn open_in(path: &Path) -> Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            std::io::stdin().lock(),
        )));
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
}

/// An output written atomically: into `.NAME.tmp-PID` beside it, renamed over NAME only once
/// complete and synced. Dropped without [`Output::commit`], the partial file is removed, so
/// a failed command never leaves a truncated wlog or wdiff under the requested name.
struct Output {
    path: PathBuf,
    tmp: Option<PathBuf>,
}

impl Output {
    fn create(path: &Path) -> Result<(Output, Box<dyn Write + Send>)> {
        if path.as_os_str() == "-" {
            let w = BufWriter::with_capacity(1 << 20, std::io::stdout());
            return Ok((
                Output {
                    path: path.to_path_buf(),
                    tmp: None,
                },
                Box::new(w),
            ));
        }
        let name = path
            .file_name()
            .ok_or_else(|| usage(format!("{} is not a file name", path.display())))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let out = Output {
            path: path.to_path_buf(),
            tmp: Some(tmp),
        };
        // Write-back starts as the file is written, so that the final sync waits for the
        // tail only.
        let f = WritebackFile::new(f).with_context(|| format!("opening {}", path.display()))?;
        Ok((out, Box::new(BufWriter::with_capacity(1 << 20, f))))
    }

    fn commit(mut self, mut w: Box<dyn Write + Send>) -> Result<()> {
        w.flush()
            .with_context(|| format!("writing {}", self.path.display()))?;
        drop(w);
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        let done = File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .with_context(|| format!("completing {}", self.path.display()));
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn is_block_device(f: &File) -> bool {
    f.metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// Physical block size of a block device.
fn device_pbs(f: &File) -> Result<Pbs> {
    let v = walb_device::sys::physical_block_size(f)
        .context("querying the physical block size (BLKPBSZGET)")?;
    Ok(Pbs::new(v)?)
}

#[derive(Args, Debug)]
pub struct FormatLdev {
    /// Log device (block device or image file).
    ldev: PathBuf,
    /// Data device (block device or image file); its size becomes the device size.
    ddev: PathBuf,
    /// Device name stored in the superblock (up to 31 bytes).
    #[arg(short = 'n', long, default_value = "")]
    name: String,
    /// Physical block size (default: the device's, or 512 for image files).
    #[arg(long)]
    pbs: Option<u32>,
}

impl FormatLdev {
    pub fn run(self) -> Result<()> {
        let ldev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.ldev)
            .with_context(|| format!("opening {}", self.ldev.display()))?;
        let ddev =
            File::open(&self.ddev).with_context(|| format!("opening {}", self.ddev.display()))?;
        let pbs = match self.pbs {
            Some(p) => Pbs::new(p)?,
            None if is_block_device(&ldev) => device_pbs(&ldev)?,
            None => Pbs::B512,
        };
        if is_block_device(&ldev) && is_block_device(&ddev) {
            let (lp, dp) = (device_pbs(&ldev)?, device_pbs(&ddev)?);
            if lp != dp || lp != pbs {
                return Err(usage(format!(
                    "physical block sizes differ: ldev {lp}, ddev {dp}, requested {pbs}"
                )));
            }
        }
        let ldev_bytes = ReadAt::size(&ldev).context("sizing the log device")?;
        let ddev_bytes = ReadAt::size(&ddev).context("sizing the data device")?;
        let mut sb = SuperBlock::format(pbs, ldev_bytes, ddev_bytes / u64::from(LBS), &self.name)?;
        let block = sb.to_block();
        ldev.write_all_at(&block, SUPER_OFFSET)
            .context("writing the superblock")?;
        // Invalidate whatever the ring holds where lsid 0 will be written.
        let zero = vec![0u8; pbs.bytes()];
        ldev.write_all_at(&zero, sb.offset_of_lsid(0))
            .context("clearing the first ring block")?;
        ldev.sync_all().context("syncing the log device")?;
        print!("{}", sb.describe());
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct LdevInfo {
    /// Log device or image.
    ldev: PathBuf,
}

impl LdevInfo {
    pub fn run(self) -> Result<()> {
        let f = walb_device::open_fresh(&self.ldev)
            .with_context(|| format!("opening {}", self.ldev.display()))?;
        let sb = SuperBlock::read(&f)
            .with_context(|| format!("reading the superblock of {}", self.ldev.display()))?;
        print!("{}", sb.describe());
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct WlogShow {
    /// wlog file ("-" or absent: standard input).
    #[arg(default_value = "-")]
    wlog: PathBuf,
}

impl WlogShow {
    pub fn run(self) -> Result<()> {
        let input = open_in(&self.wlog)?;
        let mut out = BufWriter::new(std::io::stdout().lock());
        let r = write_listing(input, &mut out);
        out.flush()?;
        r.with_context(|| format!("reading wlog {}", self.wlog.display()))?;
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct WlogCat {
    /// Log device or image.
    ldev: PathBuf,
    /// Output wlog file ("-": standard output).
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// First lsid (default: the oldest lsid of the superblock).
    #[arg(short, long)]
    begin: Option<u64>,
    /// End lsid, exclusive (default: read until the first invalid pack, cutting a torn one).
    #[arg(short, long)]
    end: Option<u64>,
    /// Allow a begin lsid before the oldest lsid.
    #[arg(short, long)]
    force: bool,
}

impl WlogCat {
    pub fn run(self) -> Result<()> {
        let f = walb_device::open_fresh(&self.ldev)
            .with_context(|| format!("opening {}", self.ldev.display()))?;
        let sb = SuperBlock::read(&f)
            .with_context(|| format!("reading the superblock of {}", self.ldev.display()))?;
        let begin = self.begin.unwrap_or(sb.oldest_lsid);
        let end = self.end.map_or(LdevEnd::Scan, LdevEnd::Known);
        let mut rd = LdevReader::new(&f, sb.clone(), begin, end, self.force)?;
        let header = WlogHeader {
            salt: sb.salt,
            pbs: sb.pbs,
            uuid: sb.uuid,
            begin_lsid: begin,
            end_lsid: self.end.unwrap_or(NO_END_LSID),
        };
        let (output, out) = Output::create(&self.output)?;
        let mut w = WlogWriter::new(out, header)?;
        while let Some(p) = rd
            .next_pack()
            .with_context(|| format!("extracting from {}", self.ldev.display()))?
        {
            w.write_pack(&p)?;
        }
        let out = w.finish()?;
        output.commit(out)?;
        eprintln!("extracted lsid range [{begin}, {})", rd.end_lsid());
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct WlogGen {
    /// Output wlog file ("-": standard output).
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// Device size (the IOs stay inside it).
    #[arg(short = 's', long, value_parser = parse_size, default_value = "16m")]
    device_size: u64,
    /// Bytes of write data to generate.
    #[arg(short = 'z', long, value_parser = parse_size, default_value = "1m")]
    data_size: u64,
    /// Physical block size.
    #[arg(long, default_value_t = 512)]
    pbs: u32,
    /// Smallest write.
    #[arg(long, value_parser = parse_size, default_value = "512")]
    min_io: u64,
    /// Largest write.
    #[arg(long, value_parser = parse_size, default_value = "32k")]
    max_io: u64,
    /// Percentage of discards.
    #[arg(long, default_value_t = 2)]
    discard_pct: u32,
    /// Percentage of all-zero writes.
    #[arg(long, default_value_t = 2)]
    zero_pct: u32,
    /// Content of the other writes: random or compressible.
    #[arg(long, default_value = "random")]
    data: DataKind,
    /// Ring size in physical blocks (adds padding where data would cross the ring end).
    #[arg(long)]
    ring_size: Option<u64>,
    /// First lsid.
    #[arg(long, default_value_t = 0)]
    begin_lsid: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl WlogGen {
    pub fn run(self) -> Result<()> {
        let lb = |b: u64, what: &str| -> Result<u32> {
            if b == 0 || b % u64::from(LBS) != 0 || b / u64::from(LBS) > 65535 {
                return Err(usage(format!(
                    "{what} of {b} bytes must be a multiple of 512 up to 65535 blocks"
                )));
            }
            Ok((b / u64::from(LBS)) as u32)
        };
        let mut g = Generator::new(self.device_size / u64::from(LBS), self.data_size);
        g.pbs = Pbs::new(self.pbs)?;
        g.min_io_lb = lb(self.min_io, "--min-io")?;
        g.max_io_lb = lb(self.max_io, "--max-io")?;
        g.discard_pct = self.discard_pct;
        g.zero_pct = self.zero_pct;
        g.kind = self.data;
        g.ring_size = self.ring_size;
        g.begin_lsid = self.begin_lsid;
        g.seed = self.seed;
        let (output, out) = Output::create(&self.output)?;
        let mut counted = CountingWriter { inner: out, n: 0 };
        let end = g.write(&mut counted)?;
        let out = counted.inner;
        output.commit(out)?;
        eprintln!("generated lsid range [{}, {end})", self.begin_lsid);
        Ok(())
    }
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn max_io_blocks(bytes: u64) -> Result<u32> {
    if bytes < u64::from(LBS)
        || bytes % u64::from(LBS) != 0
        || bytes / u64::from(LBS) > u64::from(u32::MAX)
    {
        return Err(usage(format!(
            "maximum IO size {bytes} must be a non-zero multiple of 512"
        )));
    }
    Ok((bytes / u64::from(LBS)) as u32)
}

#[derive(Args, Debug)]
pub struct WlogToWdiff {
    /// Input wlog ("-": standard input).
    #[arg(short, long, default_value = "-")]
    input: PathBuf,
    /// Output wdiff ("-": standard output).
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// Write an INDEXED wdiff (default SORTED).
    #[arg(long)]
    indexed: bool,
    /// Maximum IO size of the diff records.
    #[arg(short = 'x', long, value_parser = parse_size, default_value_t = u64::from(DEFAULT_MAX_IO_BLOCKS) * 512)]
    max_io_size: u64,
    /// Record compression, type[:level] (none, snappy, zstd, gzip, lz4, lzma).
    #[arg(short = 'c', long, default_value_t = CompressOpt::default())]
    compress: CompressOpt,
}

impl WlogToWdiff {
    pub fn run(self) -> Result<()> {
        let opt = ConvertOpt {
            kind: if self.indexed {
                WdiffKind::Indexed
            } else {
                WdiffKind::Sorted
            },
            compress: self.compress,
            max_io_blocks: max_io_blocks(self.max_io_size)?,
            ..Default::default()
        };
        // A regular file, named or redirected to standard input, is converted in two passes
        // (index, then the surviving data in address order); pipes and devices stream.
        let file = if self.input.as_os_str() == "-" {
            use std::os::fd::AsFd;
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(File::from)
                // From its start only: a redirected file read partly before stays a stream.
                .filter(|f| {
                    use std::io::Seek;
                    let mut r: &File = f;
                    f.metadata().is_ok_and(|m| m.is_file()) && r.stream_position().ok() == Some(0)
                })
                .map(|f| (f, true))
        } else {
            let f = File::open(&self.input)
                .with_context(|| format!("opening {}", self.input.display()))?;
            let regular = f
                .metadata()
                .with_context(|| format!("examining {}", self.input.display()))?
                .is_file();
            Some((f, regular))
        };
        let (output, out) = Output::create(&self.output)?;
        let converted = match file {
            Some((f, true)) => convert_wlog_file(&f, out, &opt),
            Some((f, false)) => convert_wlog(BufReader::with_capacity(1 << 20, f), out, &opt),
            None => convert_wlog(open_in(&self.input)?, out, &opt),
        };
        let (out, stats) =
            converted.with_context(|| format!("converting {}", self.input.display()))?;
        output.commit(out)?;
        tracing::info!(?stats, "converted");
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct WdiffShow {
    /// wdiff file.
    wdiff: PathBuf,
}

impl WdiffShow {
    pub fn run(self) -> Result<()> {
        let mut out = BufWriter::new(std::io::stdout().lock());
        let r = walb_kernel::wdiff::show::write_listing(&self.wdiff, &mut out);
        out.flush()?;
        r.with_context(|| format!("reading wdiff {}", self.wdiff.display()))?;
        Ok(())
    }
}

/// Remembers which input of a merge failed, to name it in the error.
#[derive(Clone, Default)]
struct FailedInput(Arc<Mutex<Option<String>>>);

impl FailedInput {
    fn describe(&self) -> String {
        match self.0.lock().ok().and_then(|g| g.clone()) {
            Some(f) => format!("reading wdiff {f}"),
            None => "merging wdiffs".to_string(),
        }
    }
}

fn open_diffs(paths: &[PathBuf]) -> Result<(Vec<DiffStream<'static>>, [u8; 16], FailedInput)> {
    open_inputs(paths, |rd| Box::new(rd))
}

/// Opens `paths` as merge inputs made by `stream`, each reporting its failure to the
/// returned [`FailedInput`]; also returns the uuid of the last (newest) input.
fn open_inputs<T: 'static>(
    paths: &[PathBuf],
    stream: impl Fn(WdiffReader<BufReader<File>>) -> MergeStream<'static, T>,
) -> Result<(Vec<MergeStream<'static, T>>, [u8; 16], FailedInput)> {
    let mut streams: Vec<MergeStream<'static, T>> = Vec::with_capacity(paths.len());
    let mut uuid = [0u8; 16];
    let failed = FailedInput::default();
    for p in paths {
        let rd = WdiffReader::open(p)?;
        uuid = rd.header().uuid;
        let name = p.display().to_string();
        let f = failed.clone();
        streams.push(Box::new(stream(rd).inspect(move |r| {
            if r.is_err() {
                if let Ok(mut g) = f.0.lock() {
                    g.get_or_insert_with(|| name.clone());
                }
            }
        })));
    }
    Ok((streams, uuid, failed))
}

#[derive(Args, Debug)]
pub struct WdiffMerge {
    /// Input wdiffs, oldest first.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output sorted wdiff ("-": standard output).
    #[arg(short, long)]
    output: PathBuf,
    /// Maximum IO size of the output records.
    #[arg(short = 'x', long, value_parser = parse_size, default_value_t = u64::from(DEFAULT_MAX_IO_BLOCKS) * 512)]
    max_io_size: u64,
    /// Record compression, type[:level].
    #[arg(short = 'c', long, default_value_t = CompressOpt::default())]
    compress: CompressOpt,
    /// The compression, type[:level], every input's records were written with, when known
    /// (a wdiff does not record levels). A sorted input's record that the merge leaves
    /// whole is then copied as stored when this equals --compress, instead of being
    /// decompressed and compressed again; the content is the same either way.
    #[arg(long)]
    inputs_compress: Option<CompressOpt>,
}

impl WdiffMerge {
    pub fn run(self) -> Result<()> {
        let max = max_io_blocks(self.max_io_size)?;
        let opt = ConvertOpt {
            max_io_blocks: max,
            compress: self.compress,
            ..Default::default()
        };
        let merged = match self.inputs_compress {
            None => {
                let (streams, uuid, failed) = open_diffs(&self.inputs)?;
                let (output, out) = Output::create(&self.output)?;
                (merge_to_sorted(streams, uuid, out, &opt), output, failed)
            }
            Some(written) => {
                let (streams, uuid, failed) =
                    open_inputs(&self.inputs, |rd| source_stream(rd, Some(written)))?;
                let (output, out) = Output::create(&self.output)?;
                (
                    merge_stored_to_sorted(streams, uuid, out, &opt),
                    output,
                    failed,
                )
            }
        };
        let (r, output, failed) = merged;
        let (out, _) = r.with_context(|| failed.describe())?;
        output.commit(out)
    }
}

fn open_target(path: &Path) -> Result<FileTarget> {
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(FileTarget::new(f)?)
}

/// Syncs the target of a redo and reports what was applied.
fn finish_redo(redo: Redo<FileTarget>) -> Result<()> {
    let (_, stats) = redo.finish()?;
    eprintln!(
        "applied: {} normal, {} zero, {} discarded logical blocks",
        stats.normal_lb, stats.zero_lb, stats.discard_lb
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct WlogRedo {
    /// Image file or block device to write to.
    target: PathBuf,
    /// wlog files in order (none: standard input).
    wlogs: Vec<PathBuf>,
    /// What to do with discards: zero, ignore or punch.
    #[arg(short, long, default_value = "zero")]
    discard: DiscardPolicy,
}

impl WlogRedo {
    pub fn run(self) -> Result<()> {
        let mut redo = Redo::new(open_target(&self.target)?, self.discard)?;
        let inputs = if self.wlogs.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            self.wlogs.clone()
        };
        for p in &inputs {
            let rd = WlogReader::new(open_in(p)?)
                .with_context(|| format!("reading wlog {}", p.display()))?;
            for pack in rd {
                let pack = pack.with_context(|| format!("reading wlog {}", p.display()))?;
                redo.apply_pack(&pack)?;
            }
        }
        finish_redo(redo)
    }
}

#[derive(Args, Debug)]
pub struct WdiffRedo {
    /// Image file or block device to write to.
    target: PathBuf,
    /// wdiff files in order.
    #[arg(required = true)]
    wdiffs: Vec<PathBuf>,
    /// What to do with discards: zero, ignore or punch.
    #[arg(short, long, default_value = "zero")]
    discard: DiscardPolicy,
}

impl WdiffRedo {
    pub fn run(self) -> Result<()> {
        let mut redo = Redo::new(open_target(&self.target)?, self.discard)?;
        for p in &self.wdiffs {
            let rd = WdiffReader::open(p)?;
            for io in rd {
                let io = io.with_context(|| format!("reading wdiff {}", p.display()))?;
                redo.apply_io(&io)?;
            }
        }
        finish_redo(redo)
    }
}

#[derive(Args, Debug)]
pub struct VirtFullCat {
    /// Base image (absent: an all-zero base).
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// wdiffs to overlay, oldest first.
    wdiffs: Vec<PathBuf>,
    /// Output image ("-": standard output).
    #[arg(short, long)]
    output: PathBuf,
    /// Image size (default: the size of the base image).
    #[arg(short, long, value_parser = parse_size)]
    size: Option<u64>,
    /// Bytes per read/write.
    #[arg(short, long, value_parser = parse_size, default_value = "1m")]
    bulk: u64,
}

impl VirtFullCat {
    pub fn run(self) -> Result<()> {
        let base = match &self.input {
            Some(p) => {
                Some(File::open(p).with_context(|| format!("opening base image {}", p.display()))?)
            }
            None => None,
        };
        let size = match (self.size, &base) {
            (Some(s), _) => s,
            (None, Some(b)) => ReadAt::size(b).context("sizing the base image")?,
            (None, None) => return Err(usage("without a base image, --size is required")),
        };
        if size % u64::from(LBS) != 0 {
            return Err(usage(format!("image size {size} is not a multiple of 512")));
        }
        let bulk = usize::try_from(self.bulk)
            .ok()
            .filter(|&b| b > 0 && b <= 1 << 30)
            .ok_or_else(|| usage("bulk must be 1 byte to 1 GiB"))?;
        let (streams, _, failed) = open_diffs(&self.wdiffs)?;
        let base_ref: Option<&dyn ReadAt> = base.as_ref().map(|b| b as &dyn ReadAt);
        let mut scan = VirtualFullScan::new(
            base_ref,
            size / u64::from(LBS),
            Box::new(DiffMerger::new(streams)),
        )?;
        let (output, mut out) = Output::create(&self.output)?;
        let mut buf = vec![0u8; bulk];
        loop {
            let n = scan
                .read_chunk(&mut buf)
                .with_context(|| failed.describe())?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", self.output.display()))?;
        }
        output.commit(out)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("1q").is_err());
        assert!(parse_size("99999999999999t").is_err());
    }
}
