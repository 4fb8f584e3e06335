//! Byte-level helpers for the fixed little-endian layout of the meta records.
//!
//! Every record is `u16 preamble` followed by its fields; `bool` is one byte (0 or 1, any
//! other value is corrupt) and `u64` is eight little-endian bytes. A [`Reader`] checks the
//! whole record length up front so that a short input is reported once as
//! [`Error::Incomplete`] for the outermost record, then reads fields without panicking.

use crate::error::{Error, Location, Result};

/// A cursor over a byte slice that reports errors with absolute byte offsets.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current byte offset.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Fails with [`Error::Incomplete`] unless `len` more bytes are available.
    pub(crate) fn need(&self, what: &'static str, len: usize) -> Result<()> {
        let got = self.buf.len().saturating_sub(self.pos);
        if got < len {
            return Err(Error::incomplete(
                what,
                Location::Offset(self.pos as u64),
                len as u64,
                got as u64,
            ));
        }
        Ok(())
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        self.need(what, N)?;
        let mut out = [0u8; N];
        let end = self.pos + N;
        match self.buf.get(self.pos..end) {
            Some(src) => out.copy_from_slice(src),
            None => {
                return Err(Error::incomplete(
                    what,
                    Location::Offset(self.pos as u64),
                    N as u64,
                    0,
                ))
            }
        }
        self.pos = end;
        Ok(out)
    }

    /// Reads a little-endian `u16`.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take::<2>(what)?))
    }

    /// Reads a little-endian `u64`.
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take::<8>(what)?))
    }

    /// Reads a one-byte boolean (0 or 1).
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool> {
        let at = self.pos;
        match self.take::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::corrupt(
                what,
                Location::Offset(at as u64),
                format!("boolean byte must be 0 or 1, found {b:#04x}"),
            )),
        }
    }

    /// Reads the preamble and checks it equals `expected`.
    pub(crate) fn preamble(&mut self, what: &'static str, expected: u16) -> Result<()> {
        let at = self.pos;
        let got = self.u16(what)?;
        if got != expected {
            return Err(Error::corrupt(
                what,
                Location::Offset(at as u64),
                format!("preamble {got:#06x}, expected {expected:#06x}"),
            ));
        }
        Ok(())
    }

    /// Fails with [`Error::Corrupt`] if bytes remain after a complete record.
    pub(crate) fn finish(&self, what: &'static str) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(Error::corrupt(
                what,
                Location::Offset(self.pos as u64),
                format!(
                    "{} trailing bytes after a complete record",
                    self.buf.len() - self.pos
                ),
            ));
        }
        Ok(())
    }
}

/// Appends a little-endian `u16`.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian `u64`.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a one-byte boolean.
pub(crate) fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

/// Gives a record type with `write_bytes`, `read` and `ENCODED_LEN` its public byte API:
/// `to_bytes`, `from_bytes` (exactly one record) and `read_prefix`.
macro_rules! persistent_record {
    ($t:ident) => {
        impl $t {
            /// The persistent form.
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity(Self::ENCODED_LEN);
                self.write_bytes(&mut out);
                out
            }

            /// Decodes exactly one record; trailing bytes are [`Error::Corrupt`](crate::Error::Corrupt).
            pub fn from_bytes(buf: &[u8]) -> crate::Result<Self> {
                let mut r = crate::meta::codec::Reader::new(buf);
                let v = Self::read(&mut r)?;
                r.finish(stringify!($t))?;
                Ok(v)
            }

            /// Decodes one record at the start of `buf`; returns it and the bytes consumed.
            pub fn read_prefix(buf: &[u8]) -> crate::Result<(Self, usize)> {
                let mut r = crate::meta::codec::Reader::new(buf);
                let v = Self::read(&mut r)?;
                Ok((v, r.pos()))
            }
        }
    };
}
pub(crate) use persistent_record;
