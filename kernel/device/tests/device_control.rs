//! The control-socket protocol in process: a server over an emulator on memory disks and
//! the [`DeviceClient`] (a `WalbDevice`), including the wait for permanent logs and bad
//! requests from a misbehaving peer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use walb_device::control::{serve, DeviceClient, ServerHooks};
use walb_device::emu::disk::{Disk, MemDisk};
use walb_device::emu::{EmuConfig, Emulator};
use walb_device::WalbDevice;
use walb_kernel::block::Pbs;
use walb_kernel::ldev::{SuperBlock, SUPER_OFFSET};

#[derive(Default)]
struct Hooks(AtomicBool);
impl ServerHooks for Hooks {
    fn stop(&self, _force: bool) -> walb_kernel::Result<()> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Arc<Hooks>) {
    let ldev = MemDisk::new(2 << 20);
    let mut sb = SuperBlock::format(Pbs::B4096, 2 << 20, 2048, "ctl").unwrap();
    ldev.write_at(&sb.to_block(), SUPER_OFFSET).unwrap();
    let cfg = EmuConfig {
        background: false,
        ..EmuConfig::default()
    };
    let (emu, _) = Emulator::open_disks(
        Arc::new(ldev),
        Arc::new(MemDisk::new(1 << 20)),
        cfg,
        None,
        None,
    )
    .unwrap();
    let emu = Arc::new(emu);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let hooks = Arc::new(Hooks::default());
    let info = emu.info().unwrap();
    let h: Arc<dyn ServerHooks> = hooks.clone();
    std::thread::spawn(move || serve(listener, emu, info, h));
    (dir, sock, hooks)
}

#[test]
fn client_drives_the_emulator_through_the_socket() {
    let (_dir, sock, hooks) = setup();
    let c = DeviceClient::connect(&sock).unwrap();
    let info = c.info().unwrap();
    assert_eq!(
        (info.name.as_str(), info.size_lb, info.pbs),
        ("ctl", 2048, 4096)
    );
    assert!(info.emulated);
    let waiter = {
        let c = DeviceClient::connect(&sock).unwrap();
        std::thread::spawn(move || c.wait_for_permanent(0, Duration::from_secs(20)))
    };
    c.write(8192, &[7u8; 8192], false).unwrap();
    let mut b = vec![0u8; 8192];
    c.read(8192, &mut b).unwrap();
    assert_eq!(b, vec![7u8; 8192], "read-after-write through the socket");
    c.flush().unwrap();
    assert_eq!(
        waiter.join().unwrap().unwrap(),
        3,
        "waiter woken by the flush"
    );
    let l = c.lsids().unwrap();
    assert_eq!((l.latest, l.permanent, l.written), (3, 3, 3));
    c.discard(8192, 4096).unwrap();
    c.read(8192, &mut b).unwrap();
    assert_eq!(&b[..4096], &[0u8; 4096]);
    let t0 = Instant::now();
    assert_eq!(
        c.wait_for_permanent(100, Duration::from_millis(100))
            .unwrap(),
        3
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
    // Errors come back typed.
    let e = c.write(1, &[0u8; 512], false).unwrap_err();
    assert!(matches!(e, walb_kernel::Error::Invalid(_)), "{e}");
    let e = c.set_oldest_lsid(1000).unwrap_err();
    assert!(matches!(e, walb_kernel::Error::Invalid(_)), "{e}");
    assert!(!c.is_overflow().unwrap());
    c.stop(false).unwrap();
    assert!(hooks.0.load(Ordering::SeqCst));
}

#[test]
fn bad_requests_get_errors_and_the_server_keeps_serving() {
    let (_dir, sock, _) = setup();
    let s = UnixStream::connect(&sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    for req in [
        "nonsense\n",
        "set-oldest\n",
        "set-oldest x\n",
        "read 0 999999999999\n",
        "resize 1\n",
        "\n",
    ] {
        w.write_all(req.as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("err "), "{req:?} -> {line:?}");
    }
    // An oversized write closes that connection (its payload cannot be skipped).
    w.write_all(b"write 0 999999999999 0\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("err invalid"), "{line}");
    line.clear();
    assert_eq!(r.read_line(&mut line).unwrap(), 0, "closed");
    // A very long line is refused too.
    let mut s2 = UnixStream::connect(&sock).unwrap();
    s2.write_all(&vec![b'a'; 10000]).unwrap();
    let mut r2 = BufReader::new(s2);
    line.clear();
    r2.read_line(&mut line).unwrap();
    assert!(line.starts_with("err"), "{line}");
    // Others are still served.
    let c = DeviceClient::connect(&sock).unwrap();
    assert_eq!(c.log_capacity().unwrap(), (2 << 20) / 4096 - 3);
}

#[test]
fn open_picks_the_emulated_device_by_name_or_path() {
    let (dir, _sock, _) = setup();
    // Only this test of this binary reads these variables.
    std::env::set_var("WALB_EMU_DIR", dir.path());
    std::env::set_var("WALB_DEV_DIR", dir.path().join("dev"));
    for wdev in ["ctl", "/dev/walb/ctl"] {
        let d = walb_device::open(wdev).unwrap();
        let info = d.info().unwrap();
        assert_eq!((info.name.as_str(), info.emulated), ("ctl", true), "{wdev}");
    }
    let e = walb_device::open("absent").err().unwrap();
    assert!(matches!(e, walb_kernel::Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("no emulated device absent"), "{e}");
    for bad in ["a b", "..", "", "/", "/dev/walb/way-too-long-a-device-name"] {
        let e = walb_device::open(bad).err();
        assert!(
            matches!(e, Some(walb_kernel::Error::Invalid(_))),
            "{bad:?}: {e:?}"
        );
    }
}
