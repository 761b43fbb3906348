//! A file's bytes, read into memory or memory-mapped, shared (without copying) by the arrays
//! parsed from it.
//!
//! An uncompressed data file of at least [`MAP_AT_LEAST`] bytes is memory-mapped: nothing is
//! read or copied when it is opened, and an array of u8 values (MNIST's pixels) stays a view of
//! the mapping that batches read from ([`super::column::ByteColumn`]), so only the pages the
//! batches touch are ever read. Compressed files (gzip, deflated `.npz` members) are
//! decompressed into memory. As with every memory-mapped reader (NumPy's `mmap_mode`,
//! safetensors), a file truncated by another process while it is mapped makes reads past its
//! new end fail with a bus error: training data is not expected to change under a run.

use std::fmt;
use std::fs::File;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Files smaller than this are read: mapping costs more than reading a few pages.
pub const MAP_AT_LEAST: u64 = 1 << 20;

enum Store {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Store {
    fn bytes(&self) -> &[u8] {
        match self {
            Store::Owned(v) => v,
            Store::Mapped(m) => m,
        }
    }
}

/// A cheaply cloned, immutable range of a shared byte buffer.
#[derive(Clone)]
pub struct Bytes {
    store: Arc<Store>,
    range: Range<usize>,
}

impl Bytes {
    /// Memory-maps `file` (read-only).
    pub fn map(file: &File) -> std::io::Result<Bytes> {
        // SAFETY: the mapping is read-only and private to this process; the file changing
        // underneath it is the documented caveat of the module.
        let map = unsafe { memmap2::Mmap::map(file)? };
        let len = map.len();
        Ok(Bytes {
            store: Arc::new(Store::Mapped(map)),
            range: 0..len,
        })
    }

    /// True when these bytes are a view of a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(*self.store, Store::Mapped(_))
    }

    /// The bytes `range` of these bytes, sharing the buffer.
    ///
    /// # Panics
    /// When `range` is not inside `0..self.len()`.
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= self.range.len());
        Bytes {
            store: Arc::clone(&self.store),
            range: self.range.start + range.start..self.range.start + range.end,
        }
    }

    /// `part` (a subslice of these bytes, found by parsing them) as shared bytes; a copy when
    /// `part` does not lie inside them.
    pub fn share(&self, part: &[u8]) -> Bytes {
        let base = self.as_ptr() as usize;
        let at = (part.as_ptr() as usize).wrapping_sub(base);
        if at <= self.len() && part.len() <= self.len() - at {
            self.slice(at..at + part.len())
        } else {
            Bytes::from(part.to_vec())
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        let len = v.len();
        Bytes {
            store: Arc::new(Store::Owned(v)),
            range: 0..len,
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.store.bytes()[self.range.clone()]
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        if self.len() <= SHOWN {
            fmt::Debug::fmt(&**self, f)
        } else {
            write!(
                f,
                "{:?} .. ({} bytes{})",
                &self[..SHOWN],
                self.len(),
                if self.is_mapped() { ", mapped" } else { "" }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_and_outside_parts_copy() {
        let b = Bytes::from((0u8..10).collect::<Vec<_>>());
        let s = b.slice(2..6);
        assert_eq!(&*s, &[2, 3, 4, 5]);
        assert_eq!(&*s.slice(1..3), &[3, 4]);
        let shared = b.share(&b[4..7]);
        assert!(Arc::ptr_eq(&shared.store, &b.store));
        assert_eq!(&*shared, &[4, 5, 6]);
        let other = [4u8, 5, 6];
        let copied = b.share(&other);
        assert!(!Arc::ptr_eq(&copied.store, &b.store));
        assert_eq!(copied, shared);
    }

    #[test]
    fn maps_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let b = Bytes::map(&File::open(&path).unwrap()).unwrap();
        assert!(b.is_mapped());
        assert_eq!(&*b.slice(6..11), b"world");
    }
}
