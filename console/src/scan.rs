//! `virt-full-scan`: a snapshot's image streamed from an archive into a file or a block
//! device, without a restore on the archive (walb-tools.md §5.16).
//!
//! The archive answers `Accepted`, the image size (`Step::Progress{total_lb}`), the image
//! in bulks (`Zero` steps for all-zero bulks) and the bulk end; this side writes it,
//! syncs, acknowledges, and waits for the archive to end the call (it refuses instead
//! when an apply moved its base meanwhile).
//!
//! A block device is written in place, zeros included: `OUT` names it, or is a link to it
//! owned by root or by the user running the scan (as `/dev/VG/LV` names are); the device
//! opened is checked to be one. Anything else is written as a new regular file, mode
//! 0600, sparse (zero bulks are not written), under an unpredictable temporary name
//! created exclusively ([`walb_wire::files::NewFile`]) and renamed over `OUT` only once
//! the archive confirmed: a failed scan leaves no file and never touches an existing one,
//! and a link at `OUT` (or at any temporary name) is replaced or refused, never followed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use walb_wire::files::{NewFile, Place, MODE_PRIVATE};
use walb_wire::msg::{Command, Message, Request, Step};
use walb_wire::{Received, Reply};

use crate::client::{Client, ClientError};

/// Logical block size.
const LBS: u64 = 512;
/// Largest zero buffer written at once to a device.
const ZEROS: usize = 1 << 20;

/// What a scan wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The image size, bytes.
    pub bytes: u64,
    /// Bytes that came as data (the rest were zero bulks).
    pub data_bytes: u64,
}

/// Where the image goes.
enum Sink {
    /// A block device, written in place.
    Device(File),
    /// A new file, renamed over the output once the archive confirmed (removed if
    /// dropped before).
    New(NewFile),
}

impl Sink {
    fn open(out: &Path, size: u64) -> std::io::Result<Sink> {
        if let Some(dev) = open_device(out)? {
            return Ok(Sink::Device(dev));
        }
        let mut f = NewFile::create(out, MODE_PRIVATE)?;
        f.file().set_len(size)?;
        Ok(Sink::New(f))
    }

    fn file(&mut self) -> &File {
        match self {
            Sink::Device(f) => f,
            Sink::New(f) => f.file(),
        }
    }

    fn zeros(&mut self, off: u64, len: u64) -> std::io::Result<()> {
        let Sink::Device(dev) = self else {
            return Ok(());
        };
        let z = vec![0u8; ZEROS.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(z.len() as u64) as usize;
            dev.write_all_at(&z[..n], off + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Puts a new file in place (a device is written already).
    fn commit(self) -> std::io::Result<()> {
        match self {
            Sink::Device(_) => Ok(()),
            Sink::New(f) => f.commit(Place::Replace),
        }
    }
}

/// The block device at `out`, open for writing, when `out` names one directly or through
/// a link owned by root or by this user; `None` when the output is to be a new file.
fn open_device(out: &Path) -> std::io::Result<Option<File>> {
    let m = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let me = nix::unistd::geteuid().as_raw();
    let follow = if m.file_type().is_block_device() {
        false
    } else if m.file_type().is_symlink() && (m.uid() == 0 || m.uid() == me) {
        true
    } else {
        return Ok(None);
    };
    if follow && !std::fs::metadata(out).is_ok_and(|t| t.file_type().is_block_device()) {
        return Ok(None);
    }
    let nofollow = if follow { 0 } else { nix::libc::O_NOFOLLOW };
    let dev = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nofollow)
        .open(out)?;
    // What was opened is what was looked at (a link swapped meanwhile is refused).
    if !dev.metadata()?.file_type().is_block_device() {
        return Err(std::io::Error::other(
            "it changed while it was opened: no longer a block device",
        ));
    }
    Ok(Some(dev))
}

/// Streams snapshot `gid` of `vol` from archive `node` into `out` (see the module
/// documentation).
pub async fn virt_full_scan(
    client: &Client,
    node: &str,
    vol: &str,
    gid: u64,
    bulk_lb: Option<u64>,
    out: &Path,
) -> Result<Scanned, ClientError> {
    let peer = client.peer(node).await?;
    let transport = |source| wire_error(node, source);
    let mut call = peer
        .call(Request::Command(Command::VirtFullScan {
            vol: vol.to_owned(),
            gid,
            bulk_lb,
        }))
        .await
        .map_err(transport)?;
    match client.await_reply(node, &mut call).await? {
        Reply::Accepted => {}
        other => {
            return Err(ClientError::Unexpected {
                node: node.to_owned(),
                asked: "virt-full-scan".into(),
                want: "accepted",
                got: format!("{other:?}"),
            })
        }
    }
    let size_lb = match call.receiver.step().await.map_err(transport)? {
        Step::Progress { total_lb, .. } => total_lb,
        other => {
            return Err(ClientError::Unexpected {
                node: node.to_owned(),
                asked: "virt-full-scan".into(),
                want: "the image size",
                got: format!("{other:?}"),
            })
        }
    };
    let size = size_lb.saturating_mul(LBS);
    let local = |what: &str, e: std::io::Error| {
        ClientError::State(format!("virt-full-scan: {what} {}: {e}", out.display()))
    };
    // From here on, an early return drops a new file's temporary name with it.
    let mut sink = Sink::open(out, size).map_err(|e| local("opening", e))?;
    let r = receive(&mut call, &mut sink, size, node).await;
    let scanned = match r {
        Ok(s) => s,
        Err(e) => {
            call.sender.reset();
            return Err(e);
        }
    };
    let synced = sink.file().sync_all().map_err(|e| local("syncing", e));
    if let Err(e) = synced {
        call.sender.reset();
        return Err(e);
    }
    call.sender.step(Step::Ack).await.map_err(transport)?;
    // The archive ends the call, or refuses what it sent after all.
    let end = call.receiver.next().await.map_err(transport);
    let confirmed = match end {
        Ok(None) => Ok(()),
        Ok(Some(Received::Msg(Message::Error(error)))) => Err(ClientError::Refused {
            node: node.to_owned(),
            error,
        }),
        Ok(Some(other)) => Err(ClientError::Unexpected {
            node: node.to_owned(),
            asked: "virt-full-scan".into(),
            want: "the end of the call",
            got: format!("{other:?}"),
        }),
        Err(e) => Err(e),
    };
    confirmed?;
    sink.commit().map_err(|e| local("renaming into", e))?;
    Ok(scanned)
}

/// A failure of the call to `node`: its refusal, or the broken conversation.
fn wire_error(node: &str, source: walb_wire::Error) -> ClientError {
    match source {
        walb_wire::Error::Remote(error) => ClientError::Refused {
            node: node.to_owned(),
            error,
        },
        source => ClientError::Transport {
            node: node.to_owned(),
            source,
        },
    }
}

/// The bulks, written at their offsets, up to the bulk end.
async fn receive(
    call: &mut walb_wire::Call,
    sink: &mut Sink,
    size: u64,
    node: &str,
) -> Result<Scanned, ClientError> {
    let mut off = 0u64;
    let mut data_bytes = 0u64;
    let past_end = |len: u64, off: u64| {
        ClientError::State(format!(
            "virt-full-scan: {node} sent {len} bytes at byte {off}, past the image's {size}"
        ))
    };
    loop {
        let next = call
            .receiver
            .next()
            .await
            .map_err(|source| wire_error(node, source))?;
        match next {
            Some(Received::Chunk(data)) => {
                let len = data.len() as u64;
                if off.saturating_add(len) > size {
                    return Err(past_end(len, off));
                }
                sink.file().write_all_at(&data, off).map_err(|e| {
                    ClientError::State(format!("virt-full-scan: writing at byte {off}: {e}"))
                })?;
                off += len;
                data_bytes += len;
            }
            Some(Received::Msg(Message::Step(Step::Zero { len_lb }))) => {
                let len = len_lb.saturating_mul(LBS);
                if off.saturating_add(len) > size {
                    return Err(past_end(len, off));
                }
                sink.zeros(off, len).map_err(|e| {
                    ClientError::State(format!("virt-full-scan: writing zeros at byte {off}: {e}"))
                })?;
                off += len;
            }
            Some(Received::End { .. }) => break,
            Some(Received::Msg(Message::Error(error))) => {
                return Err(ClientError::Refused {
                    node: node.to_owned(),
                    error,
                })
            }
            Some(other) => {
                return Err(ClientError::Unexpected {
                    node: node.to_owned(),
                    asked: "virt-full-scan".into(),
                    want: "image bulks",
                    got: format!("{other:?}"),
                })
            }
            None => {
                return Err(ClientError::State(format!(
                    "virt-full-scan: {node} ended the stream at byte {off} of {size}"
                )))
            }
        }
    }
    if off != size {
        return Err(ClientError::State(format!(
            "virt-full-scan: the image ended at byte {off} of {size}"
        )));
    }
    Ok(Scanned {
        bytes: size,
        data_bytes,
    })
}
