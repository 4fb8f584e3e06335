//! How the storage reaches its WalB devices: an injectable [`DeviceAccess`].
//!
//! The daemon uses [`SystemDevices`]: [`walb_device::open`] (an emulated device's
//! control socket, else the kernel driver) for the control interface, and for the data a
//! full backup reads, an emulated device's control socket, else the block device
//! (`info().wdev_path`, or the path given to `init-vol`). Tests plug in
//! their own access to in-process [`walb_device::emu::Emulator`]s.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use walb_device::control::DeviceClient;
use walb_device::WalbDevice;
use walb_kernel::error::IoContext;
use walb_kernel::{Error, Result};

/// A shared handle on a device's control interface.
pub type Device = Arc<dyn WalbDevice>;

/// Random reads of a device's data, as the block device shows it.
pub trait DataRead: Send {
    /// Fills `buf` from byte offset `off`.
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()>;
}

/// Opens devices by the path (or name) given to `init-vol`.
pub trait DeviceAccess: Send + Sync + 'static {
    /// The control interface of device `wdev`.
    fn open(&self, wdev: &str) -> Result<Device>;
    /// The data of device `wdev`, for a full scan.
    fn open_data(&self, wdev: &str) -> Result<Box<dyn DataRead>>;
}

/// The devices of this host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemDevices;

struct FileData(File);

impl DataRead for FileData {
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.0
            .read_exact_at(buf, off)
            .ctx(|| format!("reading the device at byte {off}"))
    }
}

struct ClientData(DeviceClient);

impl DataRead for ClientData {
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read(off, buf)
    }
}

fn is_readable_device(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| !m.is_dir())
}

impl DeviceAccess for SystemDevices {
    fn open(&self, wdev: &str) -> Result<Device> {
        walb_device::open(wdev).map(Arc::from)
    }

    fn open_data(&self, wdev: &str) -> Result<Box<dyn DataRead>> {
        let dev = self.open(wdev)?;
        let info = dev.info()?;
        if info.emulated {
            // Straight from the emulator: the same bytes as its block device (in-flight
            // writes overlaid), without the FUSE file and loop device in between, which
            // cost more CPU than the rest of a full backup's read side.
            return Ok(Box::new(ClientData(DeviceClient::connect_name(
                &info.name,
            )?)));
        }
        let candidates = info
            .wdev_path
            .iter()
            .map(|p| p.as_path())
            .chain(std::iter::once(Path::new(wdev)));
        for p in candidates {
            if is_readable_device(p) {
                let f = walb_device::open_fresh(p).ctx(|| format!("opening {}", p.display()))?;
                return Ok(Box::new(FileData(f)));
            }
        }
        Err(Error::Unsupported(format!(
            "device {} has no readable block device ({wdev} does not exist)",
            info.name
        )))
    }
}
