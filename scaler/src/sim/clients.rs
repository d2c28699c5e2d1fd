//! Clients that are not connected yet: those sleeping before a reconnect (a timing wheel), and
//! those the edge is holding while no pod has room (a FIFO queue).

use std::collections::VecDeque;

/// Attempt classes kept apart: the n-th retry sleeps U(0, min(30 s, 2^n s)), and n ≥ 5 all sleep
/// up to 30 s, so the class is capped there.
pub(crate) const CLASSES: usize = 6;

/// Retries due at future steps, counted per attempt class.
#[derive(Clone, Debug)]
pub(crate) struct RetryWheel {
    slots: Vec<[u32; CLASSES]>,
}

impl RetryWheel {
    /// A wheel able to schedule up to `horizon` steps ahead.
    pub fn new(horizon: usize) -> Self {
        RetryWheel {
            slots: vec![[0; CLASSES]; horizon + 2],
        }
    }

    /// Schedules one client of `class` to retry at `step`.
    pub fn schedule(&mut self, step: u64, class: usize) {
        let n = self.slots.len() as u64;
        self.slots[(step % n) as usize][class.min(CLASSES - 1)] += 1;
    }

    /// Takes the retries due at `step`.
    pub fn take(&mut self, step: u64) -> [u32; CLASSES] {
        let n = self.slots.len() as u64;
        std::mem::take(&mut self.slots[(step % n) as usize])
    }
}

/// A batch of held clients that arrived in the same step with the same attempt class.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub since: u64,
    pub class: u8,
    pub count: u32,
}

/// The edge's wait queue (hold mode).
#[derive(Clone, Debug, Default)]
pub(crate) struct HoldQueue {
    batches: VecDeque<Held>,
    len: u64,
}

impl HoldQueue {
    /// Appends `count` clients of `class` held since `since`.
    pub fn push(&mut self, since: u64, class: u8, count: u32) {
        if count == 0 {
            return;
        }
        match self.batches.back_mut() {
            Some(b) if b.since == since && b.class == class => b.count += count,
            _ => self.batches.push_back(Held {
                since,
                class,
                count,
            }),
        }
        self.len += u64::from(count);
    }

    /// Removes and returns batches held since `cutoff` or earlier (they time out).
    pub fn expire(&mut self, cutoff: u64) -> Option<Held> {
        if self.batches.front().is_some_and(|b| b.since <= cutoff) {
            let b = self.batches.pop_front()?;
            self.len -= u64::from(b.count);
            return Some(b);
        }
        None
    }

    /// Takes one client from the front, if any.
    pub fn pop_one(&mut self) -> Option<Held> {
        let front = self.batches.front_mut()?;
        let one = Held { count: 1, ..*front };
        front.count -= 1;
        if front.count == 0 {
            self.batches.pop_front();
        }
        self.len -= 1;
        Some(one)
    }

    /// Clients held.
    pub fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_returns_what_was_scheduled() {
        let mut w = RetryWheel::new(10);
        w.schedule(5, 0);
        w.schedule(5, 9);
        assert_eq!(w.take(4), [0; CLASSES]);
        assert_eq!(w.take(5), [1, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn queue_is_fifo_and_expires_the_oldest() {
        let mut q = HoldQueue::default();
        q.push(1, 0, 2);
        q.push(2, 1, 1);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop_one().map(|h| h.since), Some(1));
        assert_eq!(q.expire(1).map(|h| h.count), Some(1));
        assert!(q.expire(1).is_none());
        assert_eq!(q.len(), 1);
    }
}
