//! A fixed-size ring of recent demand samples: what the live loop feeds once per second and what
//! tidegate's policy reads its windows from.
//!
//! Allocation happens once, in [`History::new`]; [`History::push`] and the window queries are
//! allocation-free.

use std::time::Duration;

/// One sample of what the edge saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Time of the sample (since the loop or simulation started).
    pub at: Duration,
    /// Live connections on all pods, draining ones included.
    pub connections: u64,
    /// Connections held in the edge's wait queue.
    pub queued: u64,
    /// Attempts the edge refused since the previous sample.
    pub refused: u64,
}

/// The last `capacity` samples, oldest first.
#[derive(Clone, Debug)]
pub struct History {
    buf: Vec<Sample>,
    head: usize,
    len: usize,
}

impl History {
    /// An empty history holding up to `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> Self {
        History {
            buf: vec![Sample::default(); capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    /// Appends a sample, dropping the oldest when full.
    pub fn push(&mut self, sample: Sample) {
        let cap = self.buf.len();
        let idx = (self.head + self.len) % cap;
        self.buf[idx] = sample;
        if self.len == cap {
            self.head = (self.head + 1) % cap;
        } else {
            self.len += 1;
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no sample has been pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.iter_newest_first().next()
    }

    /// Samples from newest to oldest.
    pub fn iter_newest_first(&self) -> impl Iterator<Item = &Sample> + '_ {
        let cap = self.buf.len();
        (0..self.len)
            .rev()
            .map(move |i| &self.buf[(self.head + i) % cap])
    }

    /// Samples taken strictly after `now - window`, newest first.
    pub fn window(&self, now: Duration, window: Duration) -> impl Iterator<Item = &Sample> + '_ {
        let from = now.checked_sub(window);
        self.iter_newest_first()
            .take_while(move |s| from.is_none_or(|f| s.at > f))
    }

    /// Sum of `refused` over the samples within `window` of `now`.
    pub fn refused_within(&self, now: Duration, window: Duration) -> u64 {
        self.window(now, window).map(|s| s.refused).sum()
    }
}

/// The last `capacity` values with their times, for "peak over the last W seconds" queries.
#[derive(Clone, Debug)]
pub struct PeakWindow {
    buf: Vec<(Duration, f64)>,
    next: usize,
    len: usize,
}

impl PeakWindow {
    /// An empty window holding up to `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        PeakWindow {
            buf: vec![(Duration::ZERO, 0.0); capacity.max(1)],
            next: 0,
            len: 0,
        }
    }

    /// Records `value` at `at`, dropping the oldest value when full.
    pub fn push(&mut self, at: Duration, value: f64) {
        self.buf[self.next] = (at, value);
        self.next = (self.next + 1) % self.buf.len();
        self.len = (self.len + 1).min(self.buf.len());
    }

    /// The largest value recorded strictly after `now - window` (`None` if there is none).
    pub fn max_within(&self, now: Duration, window: Duration) -> Option<f64> {
        let from = now.checked_sub(window);
        let cap = self.buf.len();
        (0..self.len)
            .map(|i| self.buf[(self.next + cap - 1 - i) % cap])
            .filter(|(at, _)| from.is_none_or(|f| *at > f))
            .map(|(_, v)| v)
            .reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, connections: u64, refused: u64) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            connections,
            queued: 0,
            refused,
        }
    }

    #[test]
    fn ring_keeps_the_newest() {
        let mut h = History::new(3);
        assert!(h.is_empty());
        for t in 1..=5 {
            h.push(s(t, t * 10, 1));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.last().map(|x| x.connections), Some(50));
        let all: Vec<u64> = h.iter_newest_first().map(|x| x.connections).collect();
        assert_eq!(all, vec![50, 40, 30]);
    }

    #[test]
    fn peak_window_forgets_old_peaks() {
        let mut p = PeakWindow::new(4);
        assert_eq!(
            p.max_within(Duration::from_secs(1), Duration::from_secs(5)),
            None
        );
        for (t, v) in [(1, 9.0), (2, 3.0), (3, 4.0), (4, 2.0), (5, 1.0)] {
            p.push(Duration::from_secs(t), v);
        }
        assert_eq!(
            p.max_within(Duration::from_secs(5), Duration::from_secs(10)),
            Some(4.0)
        );
        assert_eq!(
            p.max_within(Duration::from_secs(5), Duration::from_secs(2)),
            Some(2.0)
        );
    }

    #[test]
    fn window_sums_recent_refusals() {
        let mut h = History::new(10);
        for t in 1..=6 {
            h.push(s(t, 0, t));
        }
        // samples at 4, 5, 6 are within 3 s of t = 6
        assert_eq!(
            h.refused_within(Duration::from_secs(6), Duration::from_secs(3)),
            15
        );
    }
}
