//! Every file the console and `walb-console ca` write is created exclusively under an
//! unpredictable temporary name, never through a link, and moved into place whole:
//! `virt-full-scan`'s image (against a fake archive over QUIC on loopback; a block device
//! output stays a block device), `metrics --out`, `ca init`/`ca issue` (keys 0600,
//! certificates 0644, `--force` replaces atomically), the lab's settings, cluster file,
//! pid and output files. For each: a link planted at the destination (and at the name the
//! old code used as a temporary) leaves its target untouched; a failed write leaves no
//! file and the old one intact; the modes are as stated whatever the umask.

use std::net::SocketAddr;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "../../tests/src/tools.rs"]
mod tools;

use walb_console::ca::{self, IssueRequest};
use walb_console::client::{Client, ClientError, ClientOptions};
use walb_console::cluster::Cluster;
use walb_console::lab::{self, LabConfig, LabLayout, LabNode};
use walb_wire::{
    ClusterCa, Command, ErrorCode, IssueOptions, Node, NodeConfig, PeerId, Reply, Request, Role,
    Step, WireError,
};

/// The tests change process-wide things (the umask, a file size limit): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(60);

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// Names in `dir` that look like temporaries (the old ones or `walb_wire::files`').
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.starts_with('.'))
        .collect()
}

/// Sets the umask; the old one.
fn set_umask(bits: u32) -> u32 {
    // SAFETY: umask only swaps the process's mask.
    unsafe { nix::libc::umask(bits as nix::libc::mode_t) as u32 }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "walb-safe-files-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

/// Limits the size of files this process writes (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored
/// so that a write past it fails with `EFBIG`) while alive.
struct FileSizeLimit {
    old: (u64, u64),
}

impl FileSizeLimit {
    fn new(bytes: u64) -> FileSizeLimit {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: ignoring a signal installs no handler code.
        unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.unwrap();
        let old = getrlimit(Resource::RLIMIT_FSIZE).unwrap();
        setrlimit(Resource::RLIMIT_FSIZE, bytes, old.1).unwrap();
        FileSizeLimit { old }
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_FSIZE, self.old.0, self.old.1).unwrap();
    }
}

// ----------------------------------------------------------------------------------------
// virt-full-scan against a fake archive

/// How the fake archive ends a scan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Ends the call: the image is confirmed.
    Confirm,
    /// Refuses after the caller's ack (an apply moved the base meanwhile).
    Refuse,
}

/// The image the fake archive sends: 64 KiB bulks, every third all zero.
fn image() -> Vec<u8> {
    let mut img = vec![0u8; 512 << 10];
    for (i, b) in img.chunks_mut(64 << 10).enumerate() {
        if i % 3 != 0 {
            for (j, x) in b.iter_mut().enumerate() {
                *x = (i * 31 + j * 7) as u8 | 1;
            }
        }
    }
    img
}

struct Fake {
    dir: TempDir,
    _archive: Node,
    client: Client,
}

fn issue(ca: &ClusterCa, dir: &Path, role: Role, id: &str) -> walb_wire::TlsFiles {
    let peer = PeerId::new(role, id).unwrap();
    ca.issue(&peer, &IssueOptions::default())
        .unwrap()
        .save(dir, true)
        .unwrap()
}

/// An archive node that serves every virt-full-scan with [`image`] and ends it by `end`,
/// and a client of a cluster file naming it a0.
async fn fake_archive(end: End) -> Fake {
    let dir = tempdir();
    let certs = dir.path().join("certs");
    let ca = ClusterCa::generate("scan", 1).unwrap();
    ca.save(&certs, false).unwrap();
    let files = issue(&ca, &certs, Role::Archive, "a0");
    issue(&ca, &certs, Role::Operator, "console");
    let node = Node::bind(NodeConfig::new("127.0.0.1:0".parse().unwrap(), true), files).unwrap();
    let addr: SocketAddr = node.local_addr().unwrap();
    let n = node.clone();
    tokio::spawn(async move {
        while let Some(inc) = n.accept().await {
            tokio::spawn(serve_scan(inc, end));
        }
    });
    let text = format!(
        "name = \"scan\"\n[certs]\nca = \"certs/ca.crt\"\ncert = \"certs/operator-console.crt\"\n\
         key = \"certs/operator-console.key\"\n\n[[node]]\nname = \"a0\"\nrole = \"archive\"\n\
         addr = \"{addr}\"\n"
    );
    let file = dir.path().join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        poll_interval: Duration::from_millis(20),
    };
    let client = Client::new(Cluster::load(&file).unwrap(), opts).unwrap();
    Fake {
        dir,
        _archive: node,
        client,
    }
}

async fn serve_scan(mut inc: walb_wire::IncomingCall, end: End) {
    if !matches!(inc.request, Request::Command(Command::VirtFullScan { .. })) {
        inc.call
            .refuse(WireError::new(ErrorCode::Unsupported, "a fake"))
            .await;
        return;
    }
    let img = image();
    let call = &mut inc.call;
    let run = async {
        call.reply(Reply::Accepted).await?;
        call.sender
            .step(Step::Progress {
                done_lb: 0,
                total_lb: img.len() as u64 / 512,
            })
            .await?;
        for b in img.chunks(64 << 10) {
            if b.iter().all(|&x| x == 0) {
                call.sender
                    .step(Step::Zero {
                        len_lb: b.len() as u64 / 512,
                    })
                    .await?;
            } else {
                call.sender.chunk(b).await?;
            }
        }
        call.sender.end_bulk().await?;
        let ack = call.receiver.step().await?;
        assert_eq!(ack, Step::Ack);
        Ok::<_, walb_wire::Error>(())
    };
    if run.await.is_err() {
        return;
    }
    match end {
        End::Confirm => {
            let _ = inc.call.sender.finish();
        }
        End::Refuse => {
            inc.call
                .refuse(WireError::new(
                    ErrorCode::WrongState,
                    "the base moved during the scan",
                ))
                .await
        }
    }
}

async fn scan(f: &Fake, out: &Path) -> Result<walb_console::scan::Scanned, ClientError> {
    tokio::time::timeout(
        LIMIT,
        walb_console::scan::virt_full_scan(&f.client, "a0", "vol0", 5, None, out),
    )
    .await
    .expect("the scan took too long")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_replaces_a_planted_link_and_never_follows_one() {
    let _g = SERIAL.lock().await;
    let old_umask = set_umask(0);
    let f = fake_archive(End::Confirm).await;
    let d = f.dir.path().join("out");
    std::fs::create_dir(&d).unwrap();
    let victim = d.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let victim2 = d.join("victim2");
    std::fs::write(&victim2, b"also precious").unwrap();
    let out = d.join("img");
    symlink(&victim, &out).unwrap();
    // The temporary name the old code used, created with O_CREAT|O_TRUNC.
    symlink(&victim2, d.join("img.walb-tmp")).unwrap();
    let s = scan(&f, &out).await.unwrap();
    set_umask(old_umask);
    assert_eq!(s.bytes, 512 << 10);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(std::fs::read(&victim2).unwrap(), b"also precious");
    assert!(!is_link(&out), "the link at the output was replaced");
    assert!(std::fs::read(&out).unwrap() == image());
    assert_eq!(mode(&out), 0o600, "an image is private, whatever the umask");
    assert!(is_link(&d.join("img.walb-tmp")), "left alone");
    assert_eq!(temporaries(&d), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scan_leaves_no_file_and_the_old_one_intact() {
    let _g = SERIAL.lock().await;
    let f = fake_archive(End::Refuse).await;
    let d = f.dir.path().join("out");
    std::fs::create_dir(&d).unwrap();
    let old = d.join("old.img");
    std::fs::write(&old, b"the previous export").unwrap();
    let e = scan(&f, &old).await.unwrap_err();
    assert!(e.to_string().contains("base moved"), "{e}");
    assert_eq!(std::fs::read(&old).unwrap(), b"the previous export");
    let new = d.join("new.img");
    assert!(scan(&f, &new).await.is_err());
    assert!(!new.exists());
    // A file that cannot be written (the file size limit of the process).
    let f = fake_archive(End::Confirm).await;
    {
        let _limit = FileSizeLimit::new(100 << 10);
        let e = scan(&f, &old).await.unwrap_err();
        assert!(e.to_string().contains("File too large"), "{e}");
    }
    assert_eq!(std::fs::read(&old).unwrap(), b"the previous export");
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["old.img"]);
}

/// A loop device over a file, detached when dropped.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn new(file: &Path) -> Option<Loop> {
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !dev.is_empty()).then(|| Loop { dev: dev.into() })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.dev)
            .status();
    }
}

fn read_dev(dev: &Path, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut v = vec![0u8; len];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_device_output_stays_a_block_device() {
    let _g = SERIAL.lock().await;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: loop devices need root");
        return;
    }
    if !tools::require("a_block_device_output_stays_a_block_device", &["losetup"]) {
        return;
    }
    let f = fake_archive(End::Confirm).await;
    let backing = f.dir.path().join("disk");
    std::fs::write(&backing, vec![0xAAu8; 512 << 10]).unwrap();
    let Some(lo) = Loop::new(&backing) else {
        eprintln!("skipped: no loop device");
        return;
    };
    scan(&f, &lo.dev).await.unwrap();
    let m = std::fs::symlink_metadata(&lo.dev).unwrap();
    assert!(m.file_type().is_block_device(), "still a block device");
    assert!(
        read_dev(&lo.dev, 512 << 10) == image(),
        "written in place, zeros too"
    );
    // Through a link of root's (as /dev/VG/LV names are): the device is written.
    std::fs::write(&backing, vec![0x55u8; 512 << 10]).unwrap();
    let lo2 = Loop::new(&backing).unwrap();
    let link = f.dir.path().join("lv");
    symlink(&lo2.dev, &link).unwrap();
    scan(&f, &link).await.unwrap();
    assert!(is_link(&link));
    assert!(read_dev(&lo2.dev, 512 << 10) == image());
    // A link of someone else's is replaced, not followed: the device stays as it was.
    std::fs::write(&backing, vec![0x33u8; 512 << 10]).unwrap();
    let lo3 = Loop::new(&backing).unwrap();
    let planted = f.dir.path().join("planted");
    symlink(&lo3.dev, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), None).unwrap();
    scan(&f, &planted).await.unwrap();
    assert!(!is_link(&planted));
    assert!(std::fs::read(&planted).unwrap() == image());
    assert!(read_dev(&lo3.dev, 512 << 10) == vec![0x33u8; 512 << 10]);
}

// ----------------------------------------------------------------------------------------
// metrics --out

#[tokio::test]
async fn metrics_are_written_whole_and_never_through_a_link() {
    let _g = SERIAL.lock().await;
    let d = tempdir();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = d.path().join("walb.prom");
    symlink(&victim, &out).unwrap();
    // The old temporary name.
    let old_tmp = d
        .path()
        .join(format!(".walb.prom.tmp.{}", std::process::id()));
    symlink(&victim, &old_tmp).unwrap();
    let old_umask = set_umask(0o077);
    walb_console::metrics::write_atomically(&out, "walb_up 1\n").unwrap();
    set_umask(old_umask);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!is_link(&out));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "walb_up 1\n");
    assert_eq!(mode(&out), 0o644, "the collector reads it");
    // A failed write: the old file stays, no temporary is left.
    {
        let _limit = FileSizeLimit::new(4096);
        let big = "walb_x 1\n".repeat(2000);
        assert!(walb_console::metrics::write_atomically(&out, &big).is_err());
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "walb_up 1\n");
    assert_eq!(
        temporaries(d.path()),
        [old_tmp.file_name().unwrap().to_string_lossy()]
    );
}

// ----------------------------------------------------------------------------------------
// ca init / ca issue

/// A directory with a CA in `ca/`, and the path of an output directory `out/`.
fn with_ca() -> (TempDir, PathBuf, PathBuf) {
    let d = tempdir();
    let (cadir, out) = (d.path().join("ca"), d.path().join("out"));
    ca::init(&cadir, "t", 5, false).unwrap();
    (d, cadir, out)
}

fn req(force: bool) -> IssueRequest {
    IssueRequest {
        role: Role::Storage,
        id: "s0".into(),
        hosts: Vec::new(),
        days: 5,
        force,
    }
}

#[tokio::test]
async fn keys_are_0600_and_certificates_0644_whatever_the_umask() {
    let _g = SERIAL.lock().await;
    let d = tempdir();
    let (cadir, out) = (d.path().join("ca"), d.path().join("out"));
    let old = set_umask(0o077);
    ca::init(&cadir, "t", 5, false).unwrap();
    let files = ca::issue(&cadir, &out, &req(false)).unwrap();
    set_umask(0);
    let files2 = ca::issue(&cadir, &out, &req(true)).unwrap();
    set_umask(old);
    assert_eq!(files, files2);
    assert_eq!(mode(&cadir.join("ca.key")), 0o600);
    assert_eq!(mode(&cadir.join("ca.crt")), 0o644);
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(mode(&files.cert), 0o644);
    assert_eq!(mode(&files.ca_cert), 0o644);
    // A second peer into the same directory keeps the same CA certificate.
    let p0 = IssueRequest {
        role: Role::Proxy,
        id: "p0".into(),
        ..req(false)
    };
    ca::issue(&cadir, &out, &p0).unwrap();
    assert_eq!(temporaries(&out), Vec::<String>::new());
}

#[tokio::test]
async fn force_replaces_a_key_atomically_and_makes_it_private() {
    let _g = SERIAL.lock().await;
    let (_d, cadir, out) = with_ca();
    let files = ca::issue(&cadir, &out, &req(false)).unwrap();
    // A key made readable by others, as `ca issue --force` kept it before.
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let old_key = std::fs::read(&files.key).unwrap();
    ca::issue(&cadir, &out, &req(true)).unwrap();
    assert_ne!(std::fs::read(&files.key).unwrap(), old_key, "a new key");
    assert_eq!(mode(&files.key), 0o600);
    // `ca init --force` alike.
    std::fs::set_permissions(cadir.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    ca::init(&cadir, "t", 5, true).unwrap();
    assert_eq!(mode(&cadir.join("ca.key")), 0o600);
}

#[tokio::test]
async fn links_planted_at_key_certificate_and_ca_copy_are_never_followed() {
    let _g = SERIAL.lock().await;
    let (d, cadir, out) = with_ca();
    std::fs::create_dir(&out).unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let files = walb_wire::TlsFiles::in_dir(&out, &PeerId::new(Role::Storage, "s0").unwrap());
    for p in [&files.key, &files.cert, &files.ca_cert] {
        symlink(&victim, p).unwrap();
    }
    // Without --force an existing name (a link too) is refused; nothing is written.
    let e = ca::issue(&cadir, &out, &req(false)).unwrap_err();
    assert!(format!("{e:#}").contains("exists"), "{e:#}");
    assert!(is_link(&files.key) && is_link(&files.cert));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // With --force each link is replaced, not followed.
    ca::issue(&cadir, &out, &req(true)).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    for p in [&files.key, &files.cert, &files.ca_cert] {
        assert!(!is_link(p), "{} replaced", p.display());
    }
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(
        std::fs::read(&files.ca_cert).unwrap(),
        std::fs::read(cadir.join("ca.crt")).unwrap()
    );
    // ca init: links at ca.key and ca.crt.
    let cadir2 = d.path().join("ca2");
    std::fs::create_dir(&cadir2).unwrap();
    symlink(&victim, cadir2.join("ca.key")).unwrap();
    assert!(ca::init(&cadir2, "t", 5, false).is_err());
    ca::init(&cadir2, "t", 5, true).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(mode(&cadir2.join("ca.key")), 0o600);
}

#[tokio::test]
async fn a_failed_issue_leaves_no_file_and_the_old_ones_intact() {
    let _g = SERIAL.lock().await;
    let (d, cadir, out) = with_ca();
    let files = ca::issue(&cadir, &out, &req(false)).unwrap();
    let (key, cert) = (
        std::fs::read(&files.key).unwrap(),
        std::fs::read(&files.cert).unwrap(),
    );
    // The certificate cannot be moved into place: the key is not replaced either.
    std::fs::remove_file(&files.cert).unwrap();
    std::fs::create_dir(&files.cert).unwrap();
    assert!(ca::issue(&cadir, &out, &req(true)).is_err());
    assert_eq!(std::fs::read(&files.key).unwrap(), key);
    std::fs::remove_dir(&files.cert).unwrap();
    std::fs::write(&files.cert, &cert).unwrap();
    // A write that fails (the file size limit of the process).
    {
        let _limit = FileSizeLimit::new(64);
        assert!(ca::issue(&cadir, &out, &req(true)).is_err());
    }
    assert_eq!(std::fs::read(&files.key).unwrap(), key);
    assert_eq!(std::fs::read(&files.cert).unwrap(), cert);
    assert_eq!(temporaries(&out), Vec::<String>::new());
    // Nothing at all where nothing was.
    let out2 = d.path().join("out2");
    std::fs::create_dir(&out2).unwrap();
    {
        let _limit = FileSizeLimit::new(64);
        assert!(ca::issue(&cadir, &out2, &req(false)).is_err());
    }
    assert_eq!(std::fs::read_dir(&out2).unwrap().count(), 0);
}

// ----------------------------------------------------------------------------------------
// The lab

#[tokio::test]
async fn the_lab_writes_its_files_whole_and_never_through_a_link() {
    let _g = SERIAL.lock().await;
    let d = tempdir();
    let layout = LabLayout::new(Some(d.path().join("lab"))).unwrap();
    std::fs::create_dir(&layout.dir).unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // The settings, the cluster file and the old code's temporary name of the latter.
    for p in [
        layout.config(),
        layout.cluster_file(),
        layout.dir.join("cluster.toml.tmp"),
    ] {
        symlink(&victim, p).unwrap();
    }
    let cfg = LabConfig::default();
    layout.save_config(&cfg).unwrap();
    lab::refresh_cluster(&layout, &cfg).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!is_link(&layout.config()) && !is_link(&layout.cluster_file()));
    assert_eq!(layout.load_config().unwrap(), cfg);
    Cluster::load(&layout.cluster_file()).unwrap();
    // A failed write keeps the old settings.
    {
        let _limit = FileSizeLimit::new(16);
        assert!(layout.save_config(&cfg).is_err());
    }
    assert_eq!(layout.load_config().unwrap(), cfg);
    assert_eq!(
        temporaries(&layout.dir),
        ["cluster.toml.tmp"],
        "only the planted link"
    );

    // A daemon's pid file and output file (a stand-in binary that exits at once).
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("walb-storage");
    std::fs::write(&exe, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s0 = LabNode::by_name("s0").unwrap();
    symlink(&victim, layout.pid(&s0)).unwrap();
    lab::spawn_daemon(&layout, &cfg, &s0, Some(&bin)).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!is_link(&layout.pid(&s0)));
    assert_eq!(mode(&layout.out(&s0)), 0o600);
    assert_eq!(mode(&layout.base(&s0)), 0o700);
    std::fs::remove_file(layout.out(&s0)).unwrap();
    symlink(&victim, layout.out(&s0)).unwrap();
    assert!(lab::spawn_daemon(&layout, &cfg, &s0, Some(&bin)).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}
