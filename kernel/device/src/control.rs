//! The control socket of an emulated device process, and its client.
//!
//! A Unix stream socket at `<emu dir>/<NAME>.sock` ([`emu_dir`], [`socket_path`]). One
//! request per line, words separated by spaces; one response per request:
//!
//! ```text
//! request                      response
//! info                         ok<TAB>name<TAB>size_lb<TAB>pbs<TAB>ldev<TAB>ddev<TAB>wdev   ("-" = none)
//! lsids                        ok latest completed flush permanent written prev_written oldest
//! set-oldest LSID | checkpoint | reset-wal | freeze SECS | melt | resize LB | flush
//! set-cp-interval MS           ok
//! cp-interval | usage | capacity | overflow | frozen | flush-capable | version   ok VALUE
//! wait AFTER MS                ok PERMANENT     (when permanent > AFTER, or after MS)
//! write OFF LEN FUA\n<LEN bytes>   ok
//! read OFF LEN                 ok LEN\n<LEN bytes>
//! discard OFF LEN              ok
//! stop FORCE                   ok               (the device process shuts down)
//! any failure                  err KIND message  (KIND: invalid, io, corrupt, unsupported)
//! ```
//!
//! Offsets and lengths are in bytes (multiples of 512). [`DeviceClient`] implements
//! [`WalbDevice`] over this protocol and adds `read`/`write`/`flush`/`discard`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, warn};

use crate::emu::Emulator;
use crate::{DeviceInfo, LsidSet, WalbDevice};
use walb_kernel::error::{Error, IoContext, Result};

/// Largest read or write carried by one request.
pub const MAX_IO_BYTES: u64 = 64 << 20;
/// Longest request line accepted.
const MAX_LINE: u64 = 4096;

/// Directory of the control sockets: `$WALB_EMU_DIR`, else `/run/walb-emu` for root, else
/// `$XDG_RUNTIME_DIR/walb-emu`, else `/tmp/walb-emu-UID`.
pub fn emu_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WALB_EMU_DIR") {
        return PathBuf::from(d);
    }
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return PathBuf::from("/run/walb-emu");
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("walb-emu");
    }
    PathBuf::from(format!("/tmp/walb-emu-{uid}"))
}

/// Directory of the device nodes (or links): `$WALB_DEV_DIR`, else `/dev/walb`.
pub fn dev_dir() -> PathBuf {
    std::env::var_os("WALB_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/walb"))
}

/// The control socket of emulated device `name`.
pub fn socket_path(name: &str) -> PathBuf {
    emu_dir().join(format!("{name}.sock"))
}

/// Names of the emulated devices whose sockets exist in [`emu_dir`].
pub fn list_emulated() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(emu_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".sock").map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

fn kind_of(e: &Error) -> &'static str {
    match e {
        Error::Invalid(_) => "invalid",
        Error::Corrupt { .. } | Error::Incomplete { .. } => "corrupt",
        Error::Unsupported(_) => "unsupported",
        Error::Io { .. } => "io",
    }
}

fn error_from(kind: &str, msg: &str) -> Error {
    match kind {
        "invalid" => Error::Invalid(msg.to_string()),
        "unsupported" => Error::Unsupported(msg.to_string()),
        "corrupt" => Error::Invalid(format!("device reported corrupt data: {msg}")),
        _ => Error::io("emulated device", std::io::Error::other(msg.to_string())),
    }
}

/// What the device process does on `stop` and after a resize.
pub trait ServerHooks: Send + Sync {
    /// `stop` was requested (`force`: even while the device is in use).
    fn stop(&self, force: bool) -> Result<()>;
    /// The device size changed.
    fn resized(&self) {}
}

/// Serves the control protocol for `emu` until the listener fails; one thread per
/// connection.
pub fn serve(
    listener: UnixListener,
    emu: Arc<Emulator>,
    info: DeviceInfo,
    hooks: Arc<dyn ServerHooks>,
) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!("control socket: accept failed: {e}");
                return;
            }
        };
        let (emu, info, hooks) = (emu.clone(), info.clone(), hooks.clone());
        let r = std::thread::Builder::new()
            .name("walb-emu-ctl".into())
            .spawn(move || {
                if let Err(e) = handle_conn(conn, &emu, &info, &*hooks) {
                    debug!("control connection ended: {e}");
                }
            });
        if let Err(e) = r {
            warn!("control socket: cannot start a thread: {e}");
        }
    }
}

fn num(w: Option<&str>, what: &str) -> Result<u64> {
    w.and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("{what}: a number is required")))
}

/// Writes `a` then `b` with vectored writes.
fn write_all_vectored(w: &mut impl Write, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = match w.write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

fn handle_conn(
    conn: UnixStream,
    emu: &Emulator,
    info: &DeviceInfo,
    hooks: &dyn ServerHooks,
) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    // The buffer of reads, kept across requests (no fresh zeroed pages per read).
    let mut rbuf: Vec<u8> = Vec::new();
    loop {
        line.clear();
        if (&mut r).take(MAX_LINE).read_line(&mut line)? == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            w.write_all(b"err invalid request line too long\n")?;
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let mut payload: Option<usize> = None;
        // A write whose payload was not consumed leaves the stream out of step: close it.
        let mut desync = cmd == "write";
        let res: Result<String> = (|| {
            Ok(match cmd {
                "write" => {
                    let off = num(words.next(), cmd)?;
                    let len = num(words.next(), cmd)?;
                    let fua = num(words.next(), cmd)? != 0;
                    if len > MAX_IO_BYTES {
                        // The payload cannot be skipped safely: end the connection.
                        return Err(Error::Invalid(format!(
                            "write of {len} bytes is above {MAX_IO_BYTES}"
                        )));
                    }
                    let mut data = vec![0u8; len as usize];
                    r.read_exact(&mut data)
                        .ctx(|| "reading the write payload".into())?;
                    desync = false;
                    if fua {
                        emu.write_fua(off, &data)?;
                    } else {
                        emu.write(off, &data)?;
                    }
                    String::new()
                }
                "read" => {
                    let off = num(words.next(), cmd)?;
                    let len = num(words.next(), cmd)?;
                    if len > MAX_IO_BYTES {
                        return Err(Error::Invalid(format!(
                            "read of {len} bytes is above {MAX_IO_BYTES}"
                        )));
                    }
                    rbuf.resize(len as usize, 0);
                    emu.read(off, &mut rbuf)?;
                    payload = Some(len as usize);
                    format!(" {len}")
                }
                _ => simple(cmd, &mut words, emu, info, hooks)?,
            })
        })();
        match res {
            Ok(s) => {
                let head = format!("ok{s}\n");
                match payload {
                    // The reply line and the data in one system call, without a copy.
                    Some(n) => write_all_vectored(&mut w, head.as_bytes(), &rbuf[..n])?,
                    None => w.write_all(head.as_bytes())?,
                }
            }
            Err(e) => {
                let msg = match &e {
                    Error::Invalid(m) | Error::Unsupported(m) => m.clone(),
                    e => e.to_string(),
                }
                .replace('\n', " ");
                w.write_all(format!("err {} {msg}\n", kind_of(&e)).as_bytes())?;
                if desync {
                    return Ok(());
                }
            }
        }
    }
}

/// Answers a control command that neither reads nor writes data (`info`, `lsids`, the
/// checkpoint, freeze and overflow controls, `flush`, `discard`, `stop`): the text after
/// `ok`.
fn simple<'a>(
    cmd: &str,
    words: &mut impl Iterator<Item = &'a str>,
    emu: &Emulator,
    info: &DeviceInfo,
    hooks: &dyn ServerHooks,
) -> Result<String> {
    Ok(match cmd {
        "info" => {
            let i = emu.info()?;
            let p = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map_or("-".to_string(), |p| p.display().to_string())
            };
            format!(
                "\t{}\t{}\t{}\t{}\t{}\t{}",
                i.name,
                i.size_lb,
                i.pbs,
                p(&i.ldev_path),
                p(&i.ddev_path),
                p(&info.wdev_path)
            )
        }
        "lsids" => {
            let a = emu.lsids()?.to_array().map(|v| v.to_string());
            format!(" {}", a.join(" "))
        }
        "set-oldest" => {
            emu.set_oldest_lsid(num(words.next(), cmd)?)?;
            String::new()
        }
        "checkpoint" => {
            emu.take_checkpoint()?;
            String::new()
        }
        "cp-interval" => format!(" {}", emu.checkpoint_interval_ms()?),
        "set-cp-interval" => {
            let ms = u32::try_from(num(words.next(), cmd)?)
                .map_err(|_| Error::Invalid("interval too large".into()))?;
            emu.set_checkpoint_interval_ms(ms)?;
            String::new()
        }
        "usage" => format!(" {}", emu.log_usage()?),
        "capacity" => format!(" {}", emu.log_capacity()?),
        "overflow" => format!(" {}", u8::from(emu.is_overflow()?)),
        "reset-wal" => {
            emu.reset_wal()?;
            String::new()
        }
        "freeze" => {
            let s = num(words.next(), cmd)?.min(86_400) as u32;
            emu.freeze(s)?;
            String::new()
        }
        "melt" => {
            emu.melt()?;
            String::new()
        }
        "frozen" => format!(" {}", u8::from(emu.is_frozen()?)),
        "resize" => {
            emu.resize(num(words.next(), cmd)?)?;
            hooks.resized();
            String::new()
        }
        "flush-capable" => format!(" {}", u8::from(emu.is_flush_capable()?)),
        "version" => format!(" {}", emu.version()?),
        "wait" => {
            let after = num(words.next(), cmd)?;
            let ms = num(words.next(), cmd)?.min(3_600_000);
            format!(
                " {}",
                emu.wait_for_permanent(after, Duration::from_millis(ms))?
            )
        }
        "flush" => {
            emu.flush()?;
            String::new()
        }
        "discard" => {
            emu.discard(num(words.next(), cmd)?, num(words.next(), cmd)?)?;
            String::new()
        }
        "stop" => {
            hooks.stop(words.next() == Some("1"))?;
            String::new()
        }
        _ => return Err(Error::Invalid(format!("unknown command {cmd:?}"))),
    })
}

/// A client of an emulated device's control socket.
pub struct DeviceClient {
    path: PathBuf,
    conn: Mutex<BufReader<UnixStream>>,
}

impl DeviceClient {
    /// Connects to the socket of emulated device `name`.
    pub fn connect_name(name: &str) -> Result<DeviceClient> {
        Self::connect(&socket_path(name))
    }

    /// Connects to a control socket.
    pub fn connect(path: &Path) -> Result<DeviceClient> {
        let s = UnixStream::connect(path)
            .ctx(|| format!("connecting to emulated device socket {}", path.display()))?;
        Ok(DeviceClient {
            path: path.to_path_buf(),
            conn: Mutex::new(BufReader::new(s)),
        })
    }

    fn call(&self, req: &str, payload: &[u8], read_back: Option<&mut [u8]>) -> Result<String> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = || format!("talking to {}", self.path.display());
        let mut msg = Vec::with_capacity(req.len() + 1 + payload.len());
        msg.extend_from_slice(req.as_bytes());
        msg.push(b'\n');
        msg.extend_from_slice(payload);
        g.get_mut().write_all(&msg).ctx(ctx)?;
        let mut line = String::new();
        (&mut *g).take(MAX_LINE).read_line(&mut line).ctx(ctx)?;
        let Some(line) = line.strip_suffix('\n') else {
            return Err(Error::io(
                ctx(),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"),
            ));
        };
        if let Some(rest) = line.strip_prefix("ok") {
            if let Some(buf) = read_back {
                g.read_exact(buf).ctx(ctx)?;
            }
            return Ok(rest.trim_start_matches(' ').to_string());
        }
        let rest = line.strip_prefix("err ").unwrap_or(line);
        let (kind, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        Err(error_from(kind, msg))
    }

    fn call_u64(&self, req: &str) -> Result<u64> {
        let s = self.call(req, &[], None)?;
        s.trim().parse().map_err(|_| {
            Error::io(
                "emulated device",
                std::io::Error::other(format!("bad reply {s:?} to {req}")),
            )
        })
    }

    fn call_unit(&self, req: &str) -> Result<()> {
        self.call(req, &[], None).map(|_| ())
    }

    /// Writes `data` at byte offset `off` through the device.
    pub fn write(&self, off: u64, data: &[u8], fua: bool) -> Result<()> {
        self.call(
            &format!("write {off} {} {}", data.len(), u8::from(fua)),
            data,
            None,
        )
        .map(|_| ())
    }

    /// Reads at byte offset `off`.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.call(&format!("read {off} {}", buf.len()), &[], Some(buf))
            .map(|_| ())
    }

    /// Flushes the device.
    pub fn flush(&self) -> Result<()> {
        self.call_unit("flush")
    }

    /// Discards a byte range.
    pub fn discard(&self, off: u64, len: u64) -> Result<()> {
        self.call_unit(&format!("discard {off} {len}"))
    }

    /// Asks the device process to stop (`force`: even while in use).
    pub fn stop(&self, force: bool) -> Result<()> {
        self.call_unit(&format!("stop {}", u8::from(force)))
    }
}

impl WalbDevice for DeviceClient {
    fn info(&self) -> Result<DeviceInfo> {
        let s = self.call("info", &[], None)?;
        let f: Vec<&str> = s.split('\t').skip(1).collect();
        let bad = || {
            Error::io(
                "emulated device",
                std::io::Error::other(format!("bad info reply {s:?}")),
            )
        };
        if f.len() != 6 {
            return Err(bad());
        }
        let p = |s: &str| (s != "-").then(|| PathBuf::from(s));
        Ok(DeviceInfo {
            name: f[0].to_string(),
            size_lb: f[1].parse().map_err(|_| bad())?,
            pbs: f[2].parse().map_err(|_| bad())?,
            ldev_path: p(f[3]),
            ddev_path: p(f[4]),
            wdev_path: p(f[5]),
            emulated: true,
        })
    }
    fn lsids(&self) -> Result<LsidSet> {
        let s = self.call("lsids", &[], None)?;
        let v: Vec<u64> = s
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let a: [u64; 7] = v.try_into().map_err(|_| {
            Error::io(
                "emulated device",
                std::io::Error::other(format!("bad lsids reply {s:?}")),
            )
        })?;
        Ok(LsidSet::from_array(a))
    }
    fn set_oldest_lsid(&self, lsid: u64) -> Result<()> {
        self.call_unit(&format!("set-oldest {lsid}"))
    }
    fn take_checkpoint(&self) -> Result<()> {
        self.call_unit("checkpoint")
    }
    fn checkpoint_interval_ms(&self) -> Result<u32> {
        Ok(self.call_u64("cp-interval")?.min(u64::from(u32::MAX)) as u32)
    }
    fn set_checkpoint_interval_ms(&self, ms: u32) -> Result<()> {
        self.call_unit(&format!("set-cp-interval {ms}"))
    }
    fn log_usage(&self) -> Result<u64> {
        self.call_u64("usage")
    }
    fn log_capacity(&self) -> Result<u64> {
        self.call_u64("capacity")
    }
    fn is_overflow(&self) -> Result<bool> {
        Ok(self.call_u64("overflow")? != 0)
    }
    fn reset_wal(&self) -> Result<()> {
        self.call_unit("reset-wal")
    }
    fn freeze(&self, timeout_s: u32) -> Result<()> {
        self.call_unit(&format!("freeze {timeout_s}"))
    }
    fn melt(&self) -> Result<()> {
        self.call_unit("melt")
    }
    fn is_frozen(&self) -> Result<bool> {
        Ok(self.call_u64("frozen")? != 0)
    }
    fn resize(&self, size_lb: u64) -> Result<()> {
        self.call_unit(&format!("resize {size_lb}"))
    }
    fn is_flush_capable(&self) -> Result<bool> {
        Ok(self.call_u64("flush-capable")? != 0)
    }
    fn wait_for_permanent(&self, after: u64, timeout: Duration) -> Result<u64> {
        // A connection of its own, so that other commands are not held up.
        let c = DeviceClient::connect(&self.path)?;
        c.call_u64(&format!("wait {after} {}", timeout.as_millis()))
    }
    fn version(&self) -> Result<u32> {
        Ok(self.call_u64("version")?.min(u64::from(u32::MAX)) as u32)
    }
}
