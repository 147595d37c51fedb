//! The engine's only way to its disk. The harness provides a crash-faithful implementation
//! (`sim::disk::SimDisk`); [`MemDisk`] is a plain in-memory one for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The handle belongs to an incarnation of the node that has since been killed.
    #[error("disk handle of a dead incarnation")]
    Fenced,
    #[error("corrupt {file}: {detail}")]
    Corrupt { file: String, detail: String },
    #[error("i/o error on {file}: {detail}")]
    Io { file: String, detail: String },
}

/// Whole-file and append-only operations with explicit durability. Reads see unsynced writes
/// (as a page cache would); a crash keeps only what `sync` made durable.
pub trait Storage: Send + Sync {
    /// Current contents; empty when the file does not exist.
    fn read(&self, file: &str) -> Result<Vec<u8>, StorageError>;
    fn append(&self, file: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Replaces the whole file atomically (write-temp-then-rename); a crash before `sync`
    /// leaves the previous contents.
    fn replace(&self, file: &str, data: &[u8]) -> Result<(), StorageError>;
    fn sync(&self, file: &str) -> Result<(), StorageError>;
}

/// In-memory storage without a crash model, for unit tests of the cores.
#[derive(Default)]
pub struct MemDisk {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Storage for MemDisk {
    fn read(&self, file: &str) -> Result<Vec<u8>, StorageError> {
        Ok(self
            .files
            .lock()
            .unwrap()
            .get(file)
            .cloned()
            .unwrap_or_default())
    }
    fn append(&self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.files
            .lock()
            .unwrap()
            .entry(file.to_string())
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }
    fn replace(&self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.files
            .lock()
            .unwrap()
            .insert(file.to_string(), data.to_vec());
        Ok(())
    }
    fn sync(&self, _file: &str) -> Result<(), StorageError> {
        Ok(())
    }
}
