//! In-memory storage: for tests, the simulator and nodes without a data dir.

use super::{Recovered, Storage, StorageError, Write};

/// Keeps everything in memory; "durable" until the process exits.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    state: Recovered,
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn write(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        self.state.apply(writes);
        Ok(())
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        Ok(self.state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_passes_the_contract() {
        super::super::contract::run_all(
            MemoryStorage::new,
            None::<fn(MemoryStorage) -> MemoryStorage>,
        );
    }
}
