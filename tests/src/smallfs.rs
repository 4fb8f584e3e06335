//! Small file systems for disk-full drills: an ext4 of a few MiB on a loop device,
//! mounted over a directory (a daemon's base directory), filled and freed on demand.
//!
//! [`SmallFs::mount`] makes the image (`truncate`, `mkfs.ext4 -q -m 0`: no blocks reserved
//! for root, whom the daemons run as), mounts it with `mount -o loop` over the directory
//! and moves what the directory held onto it. [`SmallFs::fill`] writes a filler file
//! until the file system has at most the given number of bytes left, [`SmallFs::free`]
//! deletes it. Dropping a `SmallFs` unmounts it (the loop device goes with the mount);
//! whoever uses the directory must be stopped first. Needs root.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The filler file's name, at the root of the small file system.
const FILLER: &str = "walb-test-filler";

/// A small ext4 mounted over a directory (see the module documentation).
#[derive(Debug)]
pub struct SmallFs {
    /// The mount point.
    dir: PathBuf,
    /// The image file behind the loop device.
    image: PathBuf,
    mounted: bool,
}

/// Runs a command, failing with its stderr.
fn run(c: &mut Command) -> Result<()> {
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl SmallFs {
    /// Puts an ext4 of `mib` MiB (image at `image`) over `dir`, keeping what `dir` held.
    pub fn mount(dir: &Path, image: &Path, mib: u64) -> Result<SmallFs> {
        let tools = ["truncate", "mkfs.ext4", "mount", "umount", "cp"];
        if !crate::tools::require("a small file system", &tools) {
            bail!("a small file system needs {}", tools.join(", "));
        }
        run(Command::new("truncate")
            .arg("-s")
            .arg(format!("{mib}M"))
            .arg(image))?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(image))?;
        let aside = dir.with_extension("before-mount");
        let had = dir.exists();
        if had {
            std::fs::rename(dir, &aside)
                .with_context(|| format!("moving {} aside", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir))?;
        let fs = SmallFs {
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
            mounted: true,
        };
        // mkfs leaves lost+found: a directory the daemons did not create (they name it in
        // a warning and leave it alone); the drills do not need it.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
        if had {
            run(Command::new("cp").arg("-a").arg(aside.join(".")).arg(dir))?;
            std::fs::remove_dir_all(&aside)?;
        }
        Ok(fs)
    }

    /// Bytes an unprivileged writer may still allocate.
    pub fn free_bytes(&self) -> Result<u64> {
        let s = nix::sys::statvfs::statvfs(&self.dir)?;
        #[allow(clippy::unnecessary_cast)]
        Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
    }

    /// Writes (and syncs) a filler file until at most `leave` bytes are free or the
    /// file system is full; the bytes the filler took.
    pub fn fill(&self, leave: u64) -> Result<u64> {
        let path = self.dir.join(FILLER);
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let chunk = vec![0xa5u8; 1 << 20];
        let mut wrote = 0u64;
        loop {
            let free = self.free_bytes()?;
            if free <= leave {
                break;
            }
            // Down to the last blocks: small writes, so that `leave` is met closely.
            let n = ((free - leave) as usize).min(chunk.len()).max(4096);
            match f.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(k) => wrote += k as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => return Err(e).context("writing the filler"),
            }
        }
        // The allocation is made at write time (ext4 reserves delayed blocks); the sync
        // makes it real, and may itself hit the full disk, which is what is wanted.
        let _ = f.sync_all();
        Ok(wrote)
    }

    /// Deletes the filler file: the space comes back.
    pub fn free(&self) -> Result<()> {
        let path = self.dir.join(FILLER);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a process that still holds a file there must not leave the mount
            // behind; the loop device is released with the last reference.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
            self.mounted = false;
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
