//! Session clocks for lifetimes that are not memoryless (the lognormal case).
//!
//! With exponential lifetimes the world ends sessions by counting (every live connection ends
//! in a step with the same probability), so pods hold counts only. Other lifetimes need each
//! session's end time: a heap of `(end step, session)`, per pod the list of its sessions (a killed
//! pod ends all of them), and the sessions in the order they began. The extra departures of
//! falling demand end the sessions that began last: demand that rose and falls again is the same
//! clients leaving, so the live count follows D(t) through noise. (Ending sessions chosen
//! uniformly would take long-lived ones and let the count sink below D whenever demand wobbles;
//! with memoryless lifetimes the choice makes no difference.) An ended session's heap entry stays
//! until it comes due and is skipped then; only then is its id reused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug)]
struct Session {
    slot: u32,
    /// Position in its pod's list.
    pos: u32,
    live: bool,
    /// Bumped when the id is reused, so that stale entries of `order` are recognised.
    generation: u32,
}

/// End times of live sessions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clocks {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    sessions: Vec<Session>,
    by_slot: Vec<Vec<u32>>,
    free: Vec<u32>,
    /// `(id, generation)` in the order sessions began.
    order: Vec<(u32, u32)>,
}

impl Clocks {
    /// A session on `slot` that ends at `end`.
    pub fn start(&mut self, end: u64, slot: usize) {
        if self.by_slot.len() <= slot {
            self.by_slot.resize_with(slot + 1, Vec::new);
        }
        let list = &mut self.by_slot[slot];
        let mut session = Session {
            slot: slot as u32,
            pos: list.len() as u32,
            live: true,
            generation: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                session.generation = self.sessions[id as usize].generation.wrapping_add(1);
                self.sessions[id as usize] = session;
                id
            }
            None => {
                self.sessions.push(session);
                (self.sessions.len() - 1) as u32
            }
        };
        list.push(id);
        self.heap.push(Reverse((end, id)));
        self.order.push((id, session.generation));
    }

    fn unlink(&mut self, id: u32) {
        let s = self.sessions[id as usize];
        let list = &mut self.by_slot[s.slot as usize];
        list.swap_remove(s.pos as usize);
        if let Some(&moved) = list.get(s.pos as usize) {
            self.sessions[moved as usize].pos = s.pos;
        }
        self.sessions[id as usize].live = false;
    }

    /// Ends the live session that began last and returns its slot.
    pub fn end_latest(&mut self) -> Option<usize> {
        while let Some((id, generation)) = self.order.pop() {
            let s = self.sessions[id as usize];
            if s.live && s.generation == generation {
                self.unlink(id);
                return Some(s.slot as usize);
            }
        }
        None
    }

    /// The pod in `slot` is gone: every session on it has ended.
    pub fn clear(&mut self, slot: usize) {
        if let Some(list) = self.by_slot.get_mut(slot) {
            for id in list.drain(..) {
                self.sessions[id as usize].live = false;
            }
        }
    }

    /// The slot of the next live session due at or before `step`, which ends now.
    pub fn pop_due(&mut self, step: u64) -> Option<usize> {
        loop {
            let &Reverse((end, id)) = self.heap.peek()?;
            if end > step {
                return None;
            }
            self.heap.pop();
            let s = self.sessions[id as usize];
            let live = s.live;
            if live {
                self.unlink(id);
            }
            self.free.push(id);
            if live {
                return Some(s.slot as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_sessions_come_in_time_order_and_ended_ones_are_skipped() {
        let mut c = Clocks::default();
        c.start(30, 0);
        c.start(10, 0);
        c.start(20, 1);
        c.start(40, 2);
        assert_eq!(c.pop_due(5), None);
        assert_eq!(c.pop_due(15), Some(0));
        c.clear(1);
        assert_eq!(c.pop_due(25), None, "pod 1 is gone");
        assert_eq!(c.end_latest(), Some(2), "the last to begin ends first");
        assert_eq!(c.end_latest(), Some(0), "then the one still live on pod 0");
        assert_eq!(c.end_latest(), None);
        assert_eq!(c.pop_due(40), None, "every session has ended");
        c.start(50, 1);
        assert_eq!(c.pop_due(60), Some(1), "ids are reused once due");
    }
}
