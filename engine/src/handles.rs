//! Table handles: what a drain worker and a drop contend on during step-up (incident 002).
//!
//! A handle is open or dead, has a readers/writer lock whose exclusive side is only ever
//! *tried* (a drop must not block the oplog applier forever: it gets `Busy` and retries), and an
//! in-use pin count. A pin keeps the handle's memory alive but does not stop a drop: that is the
//! faulty path of incident 002, where the drain pins the ingest table, a forced drop takes the
//! exclusive lock anyway and removes the table, and the drain's next cursor open fails
//! `NotFound`. The fixed drain holds the read lock, so the drop's try-lock fails `Busy`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The table (this incarnation of it) is gone: dropped, or dropped and created again.
    #[error("NotFound")]
    NotFound,
    /// Another holder's lock conflicts; try again later.
    #[error("Busy")]
    Busy,
}

/// Identifies one incarnation of a table's handle: a table dropped and created again gets a
/// new one, so a holder of the old handle cannot mistake the new table for its own.
pub type HandleId = u64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Handle {
    id: HandleId,
    dead: bool,
    readers: u32,
    exclusive: bool,
    pins: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handles {
    open: BTreeMap<String, Handle>,
    next_id: HandleId,
}

impl Handles {
    /// The table's open handle, opening one if there is none.
    pub fn acquire(&mut self, table: &str) -> HandleId {
        if let Some(h) = self.open.get(table) {
            return h.id;
        }
        self.next_id += 1;
        let h = Handle {
            id: self.next_id,
            ..Handle::default()
        };
        self.open.insert(table.to_string(), h);
        self.next_id
    }

    fn live(&mut self, table: &str, id: HandleId) -> Result<&mut Handle, HandleError> {
        match self.open.get_mut(table) {
            Some(h) if h.id == id && !h.dead => Ok(h),
            _ => Err(HandleError::NotFound),
        }
    }

    /// Marks the handle in use. Pins never conflict with anything, a drop included.
    pub fn pin(&mut self, table: &str, id: HandleId) -> Result<(), HandleError> {
        self.live(table, id)?.pins += 1;
        Ok(())
    }

    pub fn unpin(&mut self, table: &str, id: HandleId) {
        if let Ok(h) = self.live(table, id) {
            invariant!(h.pins > 0, "handles: unpinning {table} with no pins");
            h.pins -= 1;
        }
    }

    /// Takes a shared lock, checking the handle is still open (not dead).
    pub fn read_lock(&mut self, table: &str, id: HandleId) -> Result<(), HandleError> {
        let h = self.live(table, id)?;
        if h.exclusive {
            return Err(HandleError::Busy);
        }
        h.readers += 1;
        Ok(())
    }

    pub fn read_unlock(&mut self, table: &str, id: HandleId) {
        if let Ok(h) = self.live(table, id) {
            invariant!(
                h.readers > 0,
                "handles: read-unlocking {table} with no readers"
            );
            h.readers -= 1;
        }
    }

    /// Opens a cursor on the table through handle `id`: fails `NotFound` once the table was
    /// dropped under it.
    pub fn open_cursor(&mut self, table: &str, id: HandleId) -> Result<(), HandleError> {
        self.live(table, id).map(|_| ())
    }

    /// A drop's exclusive try-lock, then the handle is marked dead and removed. `Busy` while a
    /// reader holds the table; pins do not count. A table without a handle drops at once.
    pub fn try_drop(&mut self, table: &str) -> Result<(), HandleError> {
        let Some(h) = self.open.get_mut(table) else {
            return Ok(());
        };
        if h.readers > 0 || h.exclusive {
            return Err(HandleError::Busy);
        }
        h.exclusive = true;
        h.dead = true;
        self.open.remove(table);
        Ok(())
    }

    /// Readers and pins held on the table's open handle (tests and status).
    pub fn holders(&self, table: &str) -> (u32, u32) {
        self.open.get(table).map_or((0, 0), |h| (h.readers, h.pins))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed path, drain first: the drain's read lock makes the drop `Busy` until the copy is
    /// done; then the drop goes through and the drain's old handle is gone.
    #[test]
    fn read_lock_makes_a_concurrent_drop_busy_until_released() {
        let mut h = Handles::default();
        let id = h.acquire("c1");
        h.read_lock("c1", id).unwrap();
        assert_eq!(h.try_drop("c1"), Err(HandleError::Busy));
        assert_eq!(h.open_cursor("c1", id), Ok(()), "the copy goes on");
        h.read_unlock("c1", id);
        assert_eq!(h.try_drop("c1"), Ok(()));
        assert_eq!(h.open_cursor("c1", id), Err(HandleError::NotFound));
        // Created again: a new handle, which the old id does not open.
        let id2 = h.acquire("c1");
        assert_ne!(id, id2);
        assert_eq!(h.read_lock("c1", id), Err(HandleError::NotFound));
        assert_eq!(h.read_lock("c1", id2), Ok(()));
    }

    /// Drop first: the drain then finds the table's old handle dead, and takes the new one.
    #[test]
    fn a_drop_before_the_drain_leaves_the_old_handle_dead() {
        let mut h = Handles::default();
        let id = h.acquire("c2");
        assert_eq!(h.try_drop("c2"), Ok(()));
        assert_eq!(h.read_lock("c2", id), Err(HandleError::NotFound));
        assert_eq!(h.pin("c2", id), Err(HandleError::NotFound));
        let id2 = h.acquire("c2");
        assert_eq!(h.read_lock("c2", id2), Ok(()));
        assert_eq!(h.holders("c2"), (1, 0));
        assert_eq!(
            h.try_drop("nothing-open"),
            Ok(()),
            "no handle: drops at once"
        );
    }

    /// Faulty path (incident 002): a pin does not stop the drop, and the pinned drain's next
    /// cursor open fails `NotFound`.
    #[test]
    fn a_pin_does_not_stop_a_drop_and_the_next_open_fails_not_found() {
        let mut h = Handles::default();
        let id = h.acquire("c3");
        h.pin("c3", id).unwrap();
        assert_eq!(h.open_cursor("c3", id), Ok(()));
        assert_eq!(h.try_drop("c3"), Ok(()), "the pin does not block the drop");
        assert_eq!(h.open_cursor("c3", id), Err(HandleError::NotFound));
        h.unpin("c3", id); // harmless on a dead handle
    }

    /// `holders` counts (readers, pins); each release takes back what its acquire gave.
    #[test]
    fn holders_count_readers_and_pins_up_and_down() {
        let mut h = Handles::default();
        let id = h.acquire("c5");
        assert_eq!(h.holders("c5"), (0, 0));
        h.pin("c5", id).unwrap();
        assert_eq!(h.holders("c5"), (0, 1));
        h.read_lock("c5", id).unwrap();
        assert_eq!(h.holders("c5"), (1, 1));
        h.unpin("c5", id);
        h.read_unlock("c5", id);
        assert_eq!(h.holders("c5"), (0, 0));
    }

    #[test]
    fn an_exclusive_holder_makes_readers_busy() {
        let mut h = Handles::default();
        let id = h.acquire("c4");
        h.open.get_mut("c4").unwrap().exclusive = true;
        assert_eq!(h.read_lock("c4", id), Err(HandleError::Busy));
        assert_eq!(h.try_drop("c4"), Err(HandleError::Busy));
    }
}
