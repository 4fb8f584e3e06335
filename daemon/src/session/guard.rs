//! Temporary files of a transfer: a file being received is removed when the transfer
//! fails or is dropped half-way, unless it was disarmed (renamed into place).

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::persist;

/// Removes a temporary file when dropped, unless disarmed.
#[derive(Debug)]
pub struct TempFile(Option<PathBuf>);

impl TempFile {
    /// A guard of `path` (which may not exist yet).
    pub fn new(path: PathBuf) -> TempFile {
        TempFile(Some(path))
    }

    /// The guarded path (`None` once disarmed).
    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }

    /// Keeps the file: it is no longer removed on drop.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = persist::remove_file(&p) {
                warn!("cannot remove {}: {e}", p.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_removed_unless_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let kept = dir.path().join("kept");
        std::fs::write(&gone, b"x").unwrap();
        std::fs::write(&kept, b"y").unwrap();
        drop(TempFile::new(gone.clone()));
        let mut k = TempFile::new(kept.clone());
        assert_eq!(k.path(), Some(kept.as_path()));
        k.disarm();
        drop(k);
        assert!(!gone.exists());
        assert!(kept.exists());
        // A file never created is no error.
        drop(TempFile::new(dir.path().join("never")));
    }
}
