//! `virt-full-scan`: a snapshot's image streamed from an archive into a file or a block
//! device, without a restore on the archive (walb-tools.md §5.16).
//!
//! The archive answers `Accepted`, the image size (`Step::Progress{total_lb}`), the image
//! in bulks (`Zero` steps for all-zero bulks) and the bulk end; this side writes it,
//! syncs, acknowledges, and waits for the archive to end the call (it refuses instead
//! when an apply moved its base meanwhile). A regular file is written under a temporary
//! name, sparse (zero bulks are not written), and renamed into place only once the
//! archive confirmed: a failed scan leaves no file and never touches an existing one. A
//! block device is written in place, zeros included.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

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
struct Sink {
    file: File,
    /// The temporary file of a regular output (renamed at the end).
    tmp: Option<PathBuf>,
    device: bool,
}

impl Sink {
    fn open(out: &Path, size: u64) -> std::io::Result<Sink> {
        let device = std::fs::metadata(out).is_ok_and(|m| m.file_type().is_block_device());
        if device {
            let file = OpenOptions::new().write(true).open(out)?;
            return Ok(Sink {
                file,
                tmp: None,
                device,
            });
        }
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".walb-tmp");
        let tmp = out.with_file_name(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.set_len(size)?;
        Ok(Sink {
            file,
            tmp: Some(tmp),
            device,
        })
    }

    fn zeros(&self, off: u64, len: u64) -> std::io::Result<()> {
        if !self.device {
            return Ok(());
        }
        let z = vec![0u8; ZEROS.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(z.len() as u64) as usize;
            self.file.write_all_at(&z[..n], off + done)?;
            done += n as u64;
        }
        Ok(())
    }

    fn discard(&self) {
        if let Some(t) = &self.tmp {
            let _ = std::fs::remove_file(t);
        }
    }
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
    match call.receiver.reply().await.map_err(transport)? {
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
    let sink = Sink::open(out, size).map_err(|e| local("opening", e))?;
    let r = receive(&mut call, &sink, size, node).await;
    let scanned = match r {
        Ok(s) => s,
        Err(e) => {
            sink.discard();
            call.sender.reset();
            return Err(e);
        }
    };
    let synced = sink.file.sync_all().map_err(|e| local("syncing", e));
    if let Err(e) = synced {
        sink.discard();
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
    if let Err(e) = confirmed {
        sink.discard();
        return Err(e);
    }
    if let Some(tmp) = &sink.tmp {
        std::fs::rename(tmp, out).map_err(|e| local("renaming into", e))?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
    }
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
    sink: &Sink,
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
                sink.file.write_all_at(&data, off).map_err(|e| {
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
