//! Where the demand is: this member's arrival and refusal rates, smoothed by the member itself
//! from its own cumulative counters, and the weight a member's reported rates give it in the
//! split of the free slots.
//!
//! Every member must compute the same weights from the same reports (the rebalancing's one
//! matching relies on it), so the rates are smoothed by their *sender* and travel in its
//! report as whole numbers ([`Smoothed::quantized`]); receivers, and the sender for its own
//! weight, use exactly those values ([`weight`]). Were each receiver to smooth a sender's
//! counters over its own receive times, members would disagree on the targets and hand slots
//! back and forth. The quantum is coarse on purpose: members see each other's reports at
//! different ages, so while a rate changes they may disagree by a slot near a rounding edge;
//! whole numbers reach zero (and agreement) a few time constants after the traffic stops,
//! where thousandths would keep the weights moving for a minute.
//!
//! Arrivals are smoothed over [`ARRIVALS_TAU`], long enough to outlast a burst and the retry
//! round after it. Unmet demand — upgrades queued now, and the refusals of the last
//! [`REFUSALS_TAU`] or so, whose clients are about to retry — weighs [`UNMET_WEIGHT`] times an
//! arrival a second: a replica that refuses while another holds free slots pulls them first.

use std::time::{Duration, Instant};

use crate::share::report::Rates;

/// Time constant of the smoothed arrival rate.
pub const ARRIVALS_TAU: Duration = Duration::from_secs(5);
/// Time constant of the smoothed refusal rate (about a retry round).
pub const REFUSALS_TAU: Duration = Duration::from_secs(2);
/// Weight of one unmet upgrade against one arrival a second.
pub const UNMET_WEIGHT: f64 = 50.0;

/// This member's smoothed rates, from its own counters.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Smoothed {
    last: Option<(Instant, u64, u64)>,
    /// Upgrades routed or refused per second.
    arrivals: f64,
    /// Upgrades refused per second.
    refusals: f64,
}

impl Smoothed {
    /// Takes this member's counters at `now`: upgrades tried and refused since it started.
    pub(super) fn update(&mut self, now: Instant, attempts: u64, refused: u64) {
        if let Some((then, a0, r0)) = self.last {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt <= 0.0 {
                return;
            }
            let blend = |rate: &mut f64, delta: u64, tau: Duration| {
                let alpha = 1.0 - (-dt / tau.as_secs_f64()).exp();
                *rate += alpha * (delta as f64 / dt - *rate);
            };
            blend(
                &mut self.arrivals,
                attempts.saturating_sub(a0),
                ARRIVALS_TAU,
            );
            blend(&mut self.refusals, refused.saturating_sub(r0), REFUSALS_TAU);
        }
        self.last = Some((now, attempts, refused));
    }

    /// The rates as the report carries them, and as every member, this one included, uses
    /// them: arrivals per second and refusals within about [`REFUSALS_TAU`], rounded.
    pub(super) fn quantized(&self) -> Rates {
        let whole = |x: f64| x.max(0.0).round().min(f64::from(u32::MAX)) as u32;
        Rates {
            arrivals: whole(self.arrivals),
            refused: whole(self.refusals * REFUSALS_TAU.as_secs_f64()),
        }
    }
}

/// A member's weight in the split of free slots, from its reported `rates`, with `queued`
/// upgrades waiting there and `mean` the members' mean arrival rate per second (half of the
/// slots go evenly when busy).
pub(super) fn weight(rates: Rates, queued: u32, mean: f64) -> f64 {
    let unmet = f64::from(queued) + f64::from(rates.refused);
    1.0 + mean + f64::from(rates.arrivals) + UNMET_WEIGHT * unmet
}

/// Whether a member with `queued` upgrades waiting needs every spare slot now: it queues.
/// (Refusals alone do not count: their clients retry later, by when the regular rebalancing
/// has moved the shares; pulling even the small excesses toward them only left the other
/// members bare for the next arrivals.)
pub(super) fn waits(queued: u32) -> bool {
    queued > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_remembered_through_a_retry_round_and_then_forgotten() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut r = Smoothed::default();
        r.update(at(0.0), 0, 0);
        r.update(at(0.2), 1000, 600);
        let after_burst = weight(r.quantized(), 0, 0.0);
        r.update(at(1.2), 1000, 600);
        let a_second_later = weight(r.quantized(), 0, 0.0);
        assert!(
            a_second_later > after_burst * 0.5,
            "{after_burst} {a_second_later}"
        );
        assert!(
            a_second_later > 1000.0,
            "the refused still pull: {a_second_later}"
        );
        r.update(at(40.0), 1000, 600);
        assert_eq!(
            r.quantized(),
            Rates::default(),
            "quiet for 40 s: zero, exactly"
        );
        assert_eq!(weight(r.quantized(), 0, 0.0), 1.0, "even again");
        assert!(
            weight(r.quantized(), 10, 0.0) > 500.0,
            "a queue pulls at once"
        );
    }

    #[test]
    fn a_test_sized_burst_is_forgotten_exactly_within_fifteen_seconds() {
        // 30 arrivals, all refused, in one 200 ms sync interval, then quiet: members agree
        // again (all rates zero) well within the 20 s the share property test allows.
        let t0 = Instant::now();
        let mut r = Smoothed::default();
        r.update(t0, 0, 0);
        r.update(t0 + Duration::from_millis(200), 30, 30);
        assert_ne!(r.quantized(), Rates::default());
        let mut t = t0 + Duration::from_millis(200);
        let mut zero_at = None;
        for tick in 1..=100 {
            t += Duration::from_millis(200);
            r.update(t, 30, 30);
            if zero_at.is_none() && r.quantized() == Rates::default() {
                zero_at = Some(tick);
            }
        }
        let ticks = zero_at.expect("reaches zero");
        assert!(ticks <= 75, "zero after {ticks} ticks of 200 ms");
    }
}
