//! [`InstanceSlots`]: a counting semaphore over the pooling allocator's slots.
//!
//! The pool holds [`crate::limits::PLUGIN_INSTANCES_MAX`] instances. Running out of slots
//! must never become a command outcome (it depends on load, not on the entry), so a
//! caller waits for a slot before it instantiates and gives it back after its store is
//! dropped. Each caller holds at most one slot at a time, so waiting cannot deadlock.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// Slots free for new plugin instances.
#[derive(Debug)]
pub(crate) struct InstanceSlots {
    free: Mutex<u32>,
    returned: Condvar,
}

impl InstanceSlots {
    pub fn new(count: u32) -> Arc<Self> {
        assert!(count > 0, "a pool without slots cannot run plugins");
        Arc::new(Self {
            free: Mutex::new(count),
            returned: Condvar::new(),
        })
    }

    /// Waits for a free slot and takes it until the returned permit is dropped.
    pub fn acquire(self: &Arc<Self>) -> SlotPermit {
        let mut free = self.free.lock();
        while *free == 0 {
            self.returned.wait(&mut free);
        }
        *free -= 1;
        SlotPermit {
            slots: Arc::clone(self),
        }
    }
}

/// One taken slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SlotPermit {
    slots: Arc<InstanceSlots>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        *self.slots.free.lock() += 1;
        self.slots.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_pool_waits_for_a_returned_slot() {
        let slots = InstanceSlots::new(1);
        let first = slots.acquire();
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || drop(slots.acquire()))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        drop(first);
        waiter.join().expect("waiter");
        assert_eq!(*slots.free.lock(), 1);
    }
}
