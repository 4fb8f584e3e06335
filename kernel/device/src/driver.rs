//! The real WalB kernel driver: ioctl encodings (walb-driver.md §3) and a [`WalbDevice`]
//! backend over `/dev/walb/control`, `/dev/walb/NAME` and sysfs.
//!
//! The structures are `#[repr(C, packed)]` copies of `struct walb_ctl` (120 bytes),
//! `struct walb_ctl_data` (48), `struct walb_start_param` (64) and `struct walb_disk_data`
//! (40), x86_64 only; their layouts and the three request codes are unit-tested against
//! the numbers of the spec. The driver cannot be loaded on the development machines: this
//! backend is exercised in the Vagrant lab.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{check_name, control::dev_dir, DeviceInfo, LsidSet, WalbDevice};
use walb_kernel::error::{Error, IoContext, Result};

/// ioctl magic.
pub const WALB_IOCTL_ID: u8 = 0xfe;
/// `WALB_DYNAMIC_MINOR`.
pub const WALB_DYNAMIC_MINOR: u32 = u32::MAX;

/// Sub-commands of `walb_ctl.command` (walb-driver.md §3.3).
#[allow(missing_docs)]
pub mod cmd {
    pub const START_DEV: i32 = 1;
    pub const STOP_DEV: i32 = 2;
    pub const GET_MAJOR: i32 = 3;
    pub const LIST_DEV: i32 = 4;
    pub const NUM_OF_DEV: i32 = 5;
    pub const GET_OLDEST_LSID: i32 = 6;
    pub const SET_OLDEST_LSID: i32 = 7;
    pub const STATUS: i32 = 8;
    pub const GET_CHECKPOINT_INTERVAL: i32 = 16;
    pub const TAKE_CHECKPOINT: i32 = 17;
    pub const SET_CHECKPOINT_INTERVAL: i32 = 18;
    pub const GET_WRITTEN_LSID: i32 = 19;
    pub const GET_PERMANENT_LSID: i32 = 20;
    pub const GET_COMPLETED_LSID: i32 = 21;
    pub const GET_LOG_USAGE: i32 = 22;
    pub const GET_LOG_CAPACITY: i32 = 23;
    pub const IS_FLUSH_CAPABLE: i32 = 24;
    pub const RESIZE: i32 = 25;
    pub const CLEAR_LOG: i32 = 26;
    pub const IS_LOG_OVERFLOW: i32 = 27;
    pub const FREEZE: i32 = 28;
    pub const MELT: i32 = 29;
    pub const IS_FROZEN: i32 = 30;
}

/// `struct walb_ctl_data` (48 bytes).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default)]
pub struct WalbCtlData {
    /// wdev major.
    pub wmajor: u32,
    /// wdev minor.
    pub wminor: u32,
    /// ldev major.
    pub lmajor: u32,
    /// ldev minor.
    pub lminor: u32,
    /// ddev major.
    pub dmajor: u32,
    /// ddev minor.
    pub dminor: u32,
    /// Size of `buf` in bytes (`size_t`).
    pub buf_size: u64,
    /// User buffer (a pointer).
    pub buf: u64,
    /// Kernel-internal pointer.
    pub kbuf: u64,
}

/// `struct walb_ctl` (120 bytes).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default)]
pub struct WalbCtl {
    /// Sub-command ([`cmd`]).
    pub command: i32,
    /// Integer in/out value.
    pub val_int: i32,
    /// u64 in/out value.
    pub val_u64: u64,
    /// u32 in/out value.
    pub val_u32: u32,
    /// Error code set by the driver.
    pub error: i32,
    /// User to kernel.
    pub u2k: WalbCtlData,
    /// Kernel to user.
    pub k2u: WalbCtlData,
}

/// `struct walb_start_param` (64 bytes).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct WalbStartParam {
    /// NUL-terminated name.
    pub name: [u8; 32],
    /// Max pending data (MiB).
    pub max_pending_mb: u32,
    /// Min pending data (MiB).
    pub min_pending_mb: u32,
    /// Queue stop timeout (ms).
    pub queue_stop_timeout_ms: u32,
    /// Max log pack size (KiB).
    pub max_logpack_kb: u32,
    /// Log flush interval (ms).
    pub log_flush_interval_ms: u32,
    /// Log flush interval (MiB).
    pub log_flush_interval_mb: u32,
    /// Packs per bulk.
    pub n_pack_bulk: u32,
    /// IOs per bulk.
    pub n_io_bulk: u32,
}

impl Default for WalbStartParam {
    /// wdevc's defaults (`-maxl 32 -maxp 32 -minp 16 -qp 100 -fs 16 -fp 100 -bp 128 -bi 1024`).
    fn default() -> Self {
        WalbStartParam {
            name: [0; 32],
            max_pending_mb: 32,
            min_pending_mb: 16,
            queue_stop_timeout_ms: 100,
            max_logpack_kb: 32,
            log_flush_interval_ms: 100,
            log_flush_interval_mb: 16,
            n_pack_bulk: 128,
            n_io_bulk: 1024,
        }
    }
}

impl WalbStartParam {
    /// The driver's `is_walb_start_param_valid`.
    pub fn validate(&self) -> Result<()> {
        let p = *self;
        let ok = p.name.contains(&0)
            && (2..=16384).contains(&{ p.max_pending_mb })
            && p.min_pending_mb >= 1
            && p.min_pending_mb < p.max_pending_mb
            && p.queue_stop_timeout_ms >= 1
            && 2 * u64::from(p.log_flush_interval_mb) <= u64::from(p.max_pending_mb)
            && p.n_pack_bulk > 0
            && p.n_io_bulk > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!("invalid start parameters {p:?}")))
        }
    }
}

/// `struct walb_disk_data` (40 bytes).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct WalbDiskData {
    /// Gendisk name (`walb/NAME`).
    pub name: [u8; 32],
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

nix::ioctl_read!(ioctl_version, WALB_IOCTL_ID, 0, u32);
nix::ioctl_readwrite!(ioctl_control, WALB_IOCTL_ID, 1, WalbCtl);
nix::ioctl_readwrite!(ioctl_wdev, WALB_IOCTL_ID, 2, WalbCtl);

/// Request code of `WALB_IOCTL_VERSION`.
pub fn request_version() -> u64 {
    nix::request_code_read!(WALB_IOCTL_ID, 0, std::mem::size_of::<u32>()) as u64
}
/// Request code of `WALB_IOCTL_CONTROL`.
pub fn request_control() -> u64 {
    nix::request_code_readwrite!(WALB_IOCTL_ID, 1, std::mem::size_of::<WalbCtl>()) as u64
}
/// Request code of `WALB_IOCTL_WDEV`.
pub fn request_wdev() -> u64 {
    nix::request_code_readwrite!(WALB_IOCTL_ID, 2, std::mem::size_of::<WalbCtl>()) as u64
}

/// A device name as the 32-byte NUL-terminated field of the driver.
pub fn name_bytes(name: &str) -> Result<[u8; 32]> {
    check_name(name)?;
    let mut b = [0u8; 32];
    b[..name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

fn cstr(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// Path of the control device: `<dev dir>/control`.
pub fn control_path() -> PathBuf {
    dev_dir().join("control")
}

fn open_rw(p: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .ctx(|| format!("opening {}", p.display()))
}

fn run_ctl(f: &File, c: &mut WalbCtl, wdev: bool, what: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: `c` is a valid, exclusively borrowed 120-byte walb_ctl; its buffers, when
    // set, point to live slices of the sizes given (see the callers).
    let r = unsafe {
        if wdev {
            ioctl_wdev(fd, c)
        } else {
            ioctl_control(fd, c)
        }
    };
    r.map(|_| ()).map_err(|e| {
        let code = c.error;
        Error::io(
            format!("walb ioctl {what} (driver error {code})"),
            std::io::Error::from_raw_os_error(e as i32),
        )
    })
}

/// `WALB_IOCTL_VERSION` on the control device.
pub fn driver_version() -> Result<u32> {
    let f = open_rw(&control_path())?;
    let mut v = 0u32;
    use std::os::fd::AsRawFd;
    // SAFETY: `v` is a valid u32 the kernel writes into.
    unsafe { ioctl_version(f.as_raw_fd(), &mut v) }.map_err(|e| {
        Error::io(
            "walb ioctl VERSION",
            std::io::Error::from_raw_os_error(e as i32),
        )
    })?;
    Ok(v)
}

fn rdev_of(p: &Path) -> Result<(u32, u32)> {
    let st = nix::sys::stat::stat(p).map_err(|e| {
        Error::io(
            format!("stat {}", p.display()),
            std::io::Error::from_raw_os_error(e as i32),
        )
    })?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFBLK {
        return Err(Error::Invalid(format!(
            "{} is not a block device",
            p.display()
        )));
    }
    let r = st.st_rdev;
    Ok((
        nix::sys::stat::major(r) as u32,
        nix::sys::stat::minor(r) as u32,
    ))
}

/// START_DEV: starts a WalB device on `ldev` and `ddev`; returns (name, major, minor).
pub fn start_dev(
    ldev: &Path,
    ddev: &Path,
    mut param: WalbStartParam,
) -> Result<(String, u32, u32)> {
    param.validate()?;
    let (lmaj, lmin) = rdev_of(ldev)?;
    let (dmaj, dmin) = rdev_of(ddev)?;
    let mut out = param;
    let mut c = WalbCtl {
        command: cmd::START_DEV,
        ..Default::default()
    };
    c.u2k.lmajor = lmaj;
    c.u2k.lminor = lmin;
    c.u2k.dmajor = dmaj;
    c.u2k.dminor = dmin;
    c.u2k.wminor = WALB_DYNAMIC_MINOR;
    c.u2k.buf_size = std::mem::size_of::<WalbStartParam>() as u64;
    c.u2k.buf = &mut param as *mut WalbStartParam as u64;
    c.k2u.buf_size = std::mem::size_of::<WalbStartParam>() as u64;
    c.k2u.buf = &mut out as *mut WalbStartParam as u64;
    let f = open_rw(&control_path())?;
    run_ctl(&f, &mut c, false, "START_DEV")?;
    Ok((cstr(&out.name), c.k2u.wmajor, c.k2u.wminor))
}

/// STOP_DEV of the device at `wdev` (a `/dev/walb/NAME` path).
pub fn stop_dev(wdev: &Path, force: bool) -> Result<()> {
    let (maj, min) = rdev_of(wdev)?;
    let mut c = WalbCtl {
        command: cmd::STOP_DEV,
        val_int: i32::from(force),
        ..Default::default()
    };
    c.u2k.wmajor = maj;
    c.u2k.wminor = min;
    let f = open_rw(&control_path())?;
    run_ctl(&f, &mut c, false, "STOP_DEV")
}

/// LIST_DEV: (name without `walb/`, major, minor) of every device.
pub fn list_devs() -> Result<Vec<(String, u32, u32)>> {
    let f = open_rw(&control_path())?;
    let mut all = Vec::new();
    let mut minor0 = 0u32;
    loop {
        let mut range = [minor0, u32::MAX];
        let mut disks = [WalbDiskData {
            name: [0; 32],
            major: 0,
            minor: 0,
        }; 32];
        let mut c = WalbCtl {
            command: cmd::LIST_DEV,
            ..Default::default()
        };
        c.u2k.buf_size = std::mem::size_of_val(&range) as u64;
        c.u2k.buf = range.as_mut_ptr() as u64;
        c.k2u.buf_size = std::mem::size_of_val(&disks) as u64;
        c.k2u.buf = disks.as_mut_ptr() as u64;
        run_ctl(&f, &mut c, false, "LIST_DEV")?;
        let n = usize::try_from(c.val_int).unwrap_or(0).min(disks.len());
        for d in &disks[..n] {
            let name = cstr(&d.name);
            let name = name.strip_prefix("walb/").unwrap_or(&name).to_string();
            all.push((name, d.major, d.minor));
        }
        if n < disks.len() {
            return Ok(all);
        }
        minor0 = disks[n - 1].minor.saturating_add(1);
    }
}

/// A device of the real driver.
pub struct DriverDevice {
    name: String,
    wdev: File,
}

impl DriverDevice {
    /// Opens `/dev/walb/NAME`.
    pub fn open(name: &str) -> Result<DriverDevice> {
        check_name(name)?;
        let wdev = open_rw(&dev_dir().join(name))?;
        Ok(DriverDevice {
            name: name.to_string(),
            wdev,
        })
    }

    fn sysfs(&self) -> PathBuf {
        PathBuf::from(format!("/sys/block/walb!{}", self.name))
    }

    fn ctl(&self, command: i32, what: &str, set: impl FnOnce(&mut WalbCtl)) -> Result<WalbCtl> {
        let mut c = WalbCtl {
            command,
            ..Default::default()
        };
        set(&mut c);
        run_ctl(&self.wdev, &mut c, true, what)?;
        Ok(c)
    }

    fn get_u64(&self, command: i32, what: &str) -> Result<u64> {
        let v = self.ctl(command, what, |_| {})?.val_u64;
        if v == u64::MAX {
            return Err(Error::io(
                what.to_string(),
                std::io::Error::other("invalid lsid"),
            ));
        }
        Ok(v)
    }

    fn get_int(&self, command: i32, what: &str) -> Result<i32> {
        Ok(self.ctl(command, what, |_| {})?.val_int)
    }

    fn read_sysfs(&self, rel: &str) -> Result<String> {
        let p = self.sysfs().join(rel);
        std::fs::read_to_string(&p).ctx(|| format!("reading {}", p.display()))
    }
}

impl WalbDevice for DriverDevice {
    fn info(&self) -> Result<DeviceInfo> {
        let num = |s: String| s.trim().parse::<u64>().ok();
        let size_lb = num(self.read_sysfs("size")?).unwrap_or(0);
        let pbs = num(self.read_sysfs("queue/physical_block_size")?).unwrap_or(512) as u32;
        Ok(DeviceInfo {
            name: self.name.clone(),
            size_lb,
            pbs,
            ldev_path: Some(dev_dir().join(format!("L{}", self.name))),
            ddev_path: None,
            wdev_path: Some(dev_dir().join(&self.name)),
            emulated: false,
        })
    }
    fn lsids(&self) -> Result<LsidSet> {
        LsidSet::parse_sysfs(&self.read_sysfs("walb/lsids")?)
    }
    fn set_oldest_lsid(&self, lsid: u64) -> Result<()> {
        self.ctl(cmd::SET_OLDEST_LSID, "SET_OLDEST_LSID", |c| {
            c.val_u64 = lsid
        })
        .map(|_| ())
    }
    fn take_checkpoint(&self) -> Result<()> {
        self.ctl(cmd::TAKE_CHECKPOINT, "TAKE_CHECKPOINT", |_| {})
            .map(|_| ())
    }
    fn checkpoint_interval_ms(&self) -> Result<u32> {
        Ok(self
            .ctl(
                cmd::GET_CHECKPOINT_INTERVAL,
                "GET_CHECKPOINT_INTERVAL",
                |_| {},
            )?
            .val_u32)
    }
    fn set_checkpoint_interval_ms(&self, ms: u32) -> Result<()> {
        self.ctl(
            cmd::SET_CHECKPOINT_INTERVAL,
            "SET_CHECKPOINT_INTERVAL",
            |c| c.val_u32 = ms,
        )
        .map(|_| ())
    }
    fn log_usage(&self) -> Result<u64> {
        self.get_u64(cmd::GET_LOG_USAGE, "GET_LOG_USAGE")
    }
    fn log_capacity(&self) -> Result<u64> {
        self.get_u64(cmd::GET_LOG_CAPACITY, "GET_LOG_CAPACITY")
    }
    fn is_overflow(&self) -> Result<bool> {
        Ok(self.get_int(cmd::IS_LOG_OVERFLOW, "IS_LOG_OVERFLOW")? != 0)
    }
    fn reset_wal(&self) -> Result<()> {
        self.ctl(cmd::CLEAR_LOG, "CLEAR_LOG", |_| {}).map(|_| ())
    }
    fn freeze(&self, timeout_s: u32) -> Result<()> {
        self.ctl(cmd::FREEZE, "FREEZE", |c| c.val_u32 = timeout_s)
            .map(|_| ())
    }
    fn melt(&self) -> Result<()> {
        self.ctl(cmd::MELT, "MELT", |_| {}).map(|_| ())
    }
    fn is_frozen(&self) -> Result<bool> {
        Ok(self.get_int(cmd::IS_FROZEN, "IS_FROZEN")? != 0)
    }
    fn resize(&self, size_lb: u64) -> Result<()> {
        self.ctl(cmd::RESIZE, "RESIZE", |c| c.val_u64 = size_lb)
            .map(|_| ())
    }
    fn is_flush_capable(&self) -> Result<bool> {
        Ok(self.get_int(cmd::IS_FLUSH_CAPABLE, "IS_FLUSH_CAPABLE")? != 0)
    }
    fn wait_for_permanent(&self, after: u64, timeout: Duration) -> Result<u64> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let path = self.sysfs().join("walb/lsids");
        let mut f = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut s = String::new();
            f.seek(SeekFrom::Start(0))
                .ctx(|| "rewinding lsids".into())?;
            f.read_to_string(&mut s).ctx(|| "reading lsids".into())?;
            let p = LsidSet::parse_sysfs(&s)?.permanent;
            let now = Instant::now();
            if p > after || now >= deadline {
                return Ok(p);
            }
            // The driver notifies only on the empty -> non-empty edge: poll at most 1 s.
            let ms = (deadline - now).min(Duration::from_secs(1)).as_millis() as u16;
            let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }
    fn version(&self) -> Result<u32> {
        driver_version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn request_codes_match_the_spec() {
        assert_eq!(request_version(), 0x8004_FE00);
        assert_eq!(request_control(), 0xC078_FE01);
        assert_eq!(request_wdev(), 0xC078_FE02);
    }

    #[test]
    fn struct_layouts_match_the_spec() {
        assert_eq!(size_of::<WalbCtl>(), 120);
        assert_eq!(size_of::<WalbCtlData>(), 48);
        assert_eq!(size_of::<WalbStartParam>(), 64);
        assert_eq!(size_of::<WalbDiskData>(), 40);
        assert_eq!(offset_of!(WalbCtl, command), 0);
        assert_eq!(offset_of!(WalbCtl, val_int), 4);
        assert_eq!(offset_of!(WalbCtl, val_u64), 8);
        assert_eq!(offset_of!(WalbCtl, val_u32), 16);
        assert_eq!(offset_of!(WalbCtl, error), 20);
        assert_eq!(offset_of!(WalbCtl, u2k), 24);
        assert_eq!(offset_of!(WalbCtl, k2u), 72);
        assert_eq!(offset_of!(WalbCtlData, dminor), 20);
        assert_eq!(offset_of!(WalbCtlData, buf_size), 24);
        assert_eq!(offset_of!(WalbCtlData, buf), 32);
        assert_eq!(offset_of!(WalbCtlData, kbuf), 40);
        assert_eq!(offset_of!(WalbStartParam, max_pending_mb), 32);
        assert_eq!(offset_of!(WalbStartParam, n_io_bulk), 60);
        assert_eq!(offset_of!(WalbDiskData, major), 32);
        assert_eq!(offset_of!(WalbDiskData, minor), 36);
    }

    #[test]
    fn command_numbers_match_the_spec() {
        let v = [
            cmd::START_DEV,
            cmd::STOP_DEV,
            cmd::GET_MAJOR,
            cmd::LIST_DEV,
            cmd::NUM_OF_DEV,
            cmd::GET_OLDEST_LSID,
            cmd::SET_OLDEST_LSID,
            cmd::STATUS,
        ];
        assert_eq!(v, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(cmd::GET_CHECKPOINT_INTERVAL, 16);
        assert_eq!(cmd::GET_PERMANENT_LSID, 20);
        assert_eq!(cmd::CLEAR_LOG, 26);
        assert_eq!(cmd::IS_FROZEN, 30);
        assert_eq!(crate::version_string(crate::WALB_VERSION), "1.5.1");
    }

    #[test]
    fn start_param_validation() {
        let mut p = WalbStartParam {
            name: name_bytes("vol0").unwrap(),
            ..Default::default()
        };
        p.validate().unwrap();
        p.log_flush_interval_mb = 17;
        assert!(p.validate().is_err());
        p.log_flush_interval_mb = 16;
        p.min_pending_mb = 32;
        assert!(p.validate().is_err());
        assert!(name_bytes("a/b").is_err());
        assert!(name_bytes(&"x".repeat(26)).is_err());
        assert_eq!(cstr(b"walb/x\0\0"), "walb/x");
    }
}
