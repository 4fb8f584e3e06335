//! The emulator as a [`WalbDevice`]: the ioctls' counterparts (lsids, checkpoint,
//! freeze and melt, overflow, resize, reset of the log) over the shared state.

use std::time::{Duration, Instant};

use crate::lsids::{Freeze, LsidSet};
use crate::{DeviceInfo, WalbDevice};
use walb_kernel::block::LBS;
use walb_kernel::error::{Error, IoContext, Result};
use walb_kernel::ldev::{SuperBlock, SUPER_OFFSET};

use super::redo::{header_valid, write_ring};
use super::{Emulator, PERMANENT_RECHECK};

impl WalbDevice for Emulator {
    fn info(&self) -> Result<DeviceInfo> {
        let g = self.lock();
        Ok(DeviceInfo {
            name: self.shared.name.clone(),
            size_lb: g.sb.device_size,
            pbs: g.sb.pbs.get(),
            ldev_path: self.shared.ldev_path.clone(),
            ddev_path: self.shared.ddev_path.clone(),
            wdev_path: None,
            emulated: true,
        })
    }

    fn lsids(&self) -> Result<LsidSet> {
        Ok(self.lock().st.lsids())
    }

    fn set_oldest_lsid(&self, lsid: u64) -> Result<()> {
        let mut g = self.lock();
        if g.st.check_set_oldest(lsid)? && !header_valid(&*self.shared.ldev, &g.sb, lsid) {
            return Err(Error::Invalid(format!(
                "set-oldest-lsid {lsid}: no valid log pack starts there"
            )));
        }
        g.st.set_oldest(lsid);
        self.shared.checkpoint(&mut g, true)
    }

    fn take_checkpoint(&self) -> Result<()> {
        let sh = &*self.shared;
        let _serial = sh.serialize();
        let mut g = self.lock();
        if g.closed {
            return Err(Error::Invalid("the device is closed".into()));
        }
        sh.sync_and_apply(&mut g)?;
        sh.checkpoint(&mut g, false)
    }

    fn checkpoint_interval_ms(&self) -> Result<u32> {
        Ok(self.lock().st.tunables().checkpoint_interval.as_millis() as u32)
    }

    fn set_checkpoint_interval_ms(&self, ms: u32) -> Result<()> {
        self.lock()
            .st
            .set_checkpoint_interval(Duration::from_millis(ms.into()), Instant::now())
    }

    fn log_usage(&self) -> Result<u64> {
        Ok(self.lock().st.usage())
    }

    fn log_capacity(&self) -> Result<u64> {
        Ok(self.lock().st.capacity())
    }

    fn is_overflow(&self) -> Result<bool> {
        Ok(self.lock().st.is_overflow())
    }

    fn reset_wal(&self) -> Result<()> {
        let sh = &*self.shared;
        let _serial = sh.serialize();
        let mut g = self.lock();
        if g.closed {
            return Err(Error::Invalid("the device is closed".into()));
        }
        // Deep freeze: no new batch is admitted; the one being written finishes.
        g.st.begin_reset()?;
        g = sh.wait_no_batch_in_flight(g);
        let r = (|| -> Result<SuperBlock> {
            sh.sync_and_apply(&mut g)?;
            sh.ddev.sync().ctx(|| "flushing the data device".into())?;
            let mut sb = g.sb.clone();
            let ldev_pb =
                sh.ldev.size().ctx(|| "sizing the log device".into())? / u64::from(sb.pbs.get());
            let ring = ldev_pb.saturating_sub(sb.ring_offset_pb());
            if ring < sb.ring_buffer_size {
                return Err(Error::Invalid(format!(
                    "the log device shrank: ring of {ring} blocks < {}",
                    sb.ring_buffer_size
                )));
            }
            sb.ring_buffer_size = ring;
            sb.salt = rand::random();
            sb.uuid = rand::random();
            sb.oldest_lsid = 0;
            sb.written_lsid = 0;
            let block = sb.to_block();
            sh.ldev
                .write_at(&block, SUPER_OFFSET)
                .ctx(|| "writing the superblock".into())?;
            write_ring(&*sh.ldev, &sb, 0, &vec![0u8; sb.pbs.bytes()])?;
            sh.ldev.sync().ctx(|| "syncing the log device".into())?;
            Ok(sb)
        })();
        let now = Instant::now();
        match r {
            Ok(sb) => {
                g.st.end_reset(Some(sb.ring_buffer_size), now);
                g.sb = sb;
                g.pending.clear();
                sh.wq_cond.notify_all();
                Ok(())
            }
            Err(e) => {
                g.st.end_reset(None, now);
                sh.wq_cond.notify_all();
                Err(e)
            }
        }
    }

    fn freeze(&self, timeout_s: u32) -> Result<()> {
        // As the driver: cancel a pending auto-melt (CANCELING meanwhile), then freeze.
        self.cancel_melt();
        let sh = &*self.shared;
        let _serial = sh.serialize();
        let mut g = self.lock();
        if g.closed {
            return Err(Error::Invalid("the device is closed".into()));
        }
        let was_melted = g.st.freeze_state() == Freeze::Melted;
        g.st.freeze(Duration::from_secs(timeout_s.into()), Instant::now())?;
        if !was_melted {
            return Ok(());
        }
        // Drain: the batch being written finishes and every logged write reaches the data
        // device (latest == written); queued writes wait for the melt.
        g = sh.wait_no_batch_in_flight(g);
        sh.sync_and_apply(&mut g)
    }

    fn melt(&self) -> Result<()> {
        self.cancel_melt();
        let mut g = self.lock();
        g.st.melt(Instant::now())?;
        self.shared.wq_cond.notify_all();
        Ok(())
    }

    fn is_frozen(&self) -> Result<bool> {
        Ok(self.lock().st.is_frozen())
    }

    fn resize(&self, size_lb: u64) -> Result<()> {
        let mut g = self.lock();
        let ddev_lb = self
            .shared
            .ddev
            .size()
            .ctx(|| "sizing the data device".into())?
            / u64::from(LBS);
        let new = if size_lb == 0 { ddev_lb } else { size_lb };
        let cur = g.sb.device_size;
        if new < cur {
            return Err(Error::Invalid(format!(
                "resize to {new} blocks: shrinking ({cur} now) is not supported"
            )));
        }
        if new > ddev_lb {
            return Err(Error::Invalid(format!(
                "resize to {new} blocks: the data device has only {ddev_lb} (grow it first)"
            )));
        }
        if new == cur {
            return Ok(());
        }
        g.sb.device_size = new;
        self.shared.checkpoint(&mut g, true)
    }

    fn is_flush_capable(&self) -> Result<bool> {
        Ok(true)
    }

    /// Woken on the driver's notify edge (the first permanent log after an empty log)
    /// and on close; otherwise it looks again every [`PERMANENT_RECHECK`], so a return
    /// can lag an advance that was not an edge by up to that long.
    fn wait_for_permanent(&self, after: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            let p = g.st.lsids().permanent;
            let now = Instant::now();
            if p > after || now >= deadline || g.closed {
                return Ok(p);
            }
            g = self
                .shared
                .perm_cond
                .wait_timeout(g, (deadline - now).min(PERMANENT_RECHECK))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}
