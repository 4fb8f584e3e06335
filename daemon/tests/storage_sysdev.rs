//! The daemon's own device access ([`SystemDevices`]) against an emulated device served on
//! its control socket, as `wdevc create-wdev --emulate --no-block` runs it: the device is
//! found by name, the log is read from its log device file, and with no block device the
//! full backup reads the data through the control socket.

mod storage_support;

use std::os::unix::net::UnixListener;
use std::sync::Arc;

use storage_support::*;
use walb_daemon::storage::{vol, SystemDevices};
use walb_device::control::{serve, ServerHooks};
use walb_device::WalbDevice;
use walb_kernel::block::Pbs;
use walb_wire::msg::{Command, ErrorCode, Reply};

struct NoHooks;
impl ServerHooks for NoHooks {
    fn stop(&self, _force: bool) -> walb_kernel::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_devices_reach_an_emulated_device_by_its_socket() {
    let tmp = tempfile::tempdir().unwrap();
    // The only test of this binary: the environment is ours.
    std::env::set_var("WALB_EMU_DIR", tmp.path().join("emu"));
    std::env::set_var("WALB_DEV_DIR", tmp.path().join("dev"));
    std::fs::create_dir_all(tmp.path().join("emu")).unwrap();
    let files = format_device(tmp.path(), "s9", Pbs::B4096, 4 << 20, 1 << 20);
    let emu = open_emu(&files, "s9");
    emu.write(0, &data(256 << 10, 3)).unwrap();
    emu.flush().unwrap();
    let listener = UnixListener::bind(walb_device::control::socket_path("s9")).unwrap();
    let info = emu.info().unwrap();
    let e2 = Arc::clone(&emu);
    std::thread::spawn(move || serve(listener, e2, info, Arc::new(NoHooks)));

    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let base = tmp.path().join("base");
    let d = start_storage_with(
        &certs,
        &base,
        config(archive.addr, &[proxy.addr]),
        Arc::new(SystemDevices),
    )
    .await;
    let op = Op::connect(&certs, d.addr).await;
    assert_refused(
        op.cmd(Command::InitVol {
            vol: "v0".into(),
            wdev_path: Some("/dev/walb/none".into()),
        })
        .await,
        ErrorCode::NotFound,
        &["none"],
    );
    assert_eq!(
        op.cmd(Command::InitVol {
            vol: "v0".into(),
            wdev_path: Some("/dev/walb/s9".into()),
        })
        .await,
        Ok(Reply::Done)
    );
    let g = full_backup(&op, &archive, "v0").await;
    let mut img = vec![0u8; 1 << 20];
    emu.read(0, &mut img).unwrap();
    assert!(g.image == img, "image read through the control socket");
    emu.write(64 << 10, &data(64 << 10, 4)).unwrap();
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    wait_for("the log to be shipped and freed", || {
        vol::load(&base.join("v0")).unwrap().snaps.done.lsid == end && lsids(&emu).oldest == end
    })
    .await;
    let all: Vec<u8> = proxy.acked().iter().flat_map(|g| g.bytes.clone()).collect();
    assert!(all == ldev_bytes(&files.ldev, 0, end));
}
