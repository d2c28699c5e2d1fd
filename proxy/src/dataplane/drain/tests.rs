//! The drain's schedule, table-tested with time passed in.

use super::*;

const S: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A drain started at `t0` with a 5 s delay and a 10 s grace period (closes spread over 5 s).
fn machine(t0: Instant) -> Machine {
    Machine::new(t0, 5 * S, 10 * S)
}

#[test]
fn the_schedule_step_by_step() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    let wait = |until, or_none_open| Step::Wait {
        until,
        or_none_open,
    };
    // (time since SIGTERM, open connections, open WebSockets, step)
    let table = [
        (ms(0), 7, 4, wait(t0 + 5 * S, false)),
        (ms(4_999), 0, 0, wait(t0 + 5 * S, false)),
        (ms(5_000), 7, 4, Step::StopAccepting),
        // 4 closes over 5 s: at +0, +1.25, +2.5, +3.75 s.
        (ms(5_000), 7, 4, Step::Close { n: 1 }),
        (ms(5_000), 7, 4, wait(t0 + ms(6_250), true)),
        (ms(6_249), 7, 4, wait(t0 + ms(6_250), true)),
        (ms(6_250), 7, 4, Step::Close { n: 1 }),
        // Late: two are due at once.
        (ms(8_800), 6, 3, Step::Close { n: 2 }),
        (ms(8_800), 6, 3, wait(t0 + 15 * S, true)),
        (ms(12_000), 1, 0, wait(t0 + 15 * S, true)),
        (ms(15_000), 1, 0, Step::Cut),
        (ms(15_001), 1, 0, Step::Done),
    ];
    for (i, (at, open, websockets, want)) in table.into_iter().enumerate() {
        assert_eq!(m.step(t0 + at, open, websockets), want, "row {i} at {at:?}");
    }
}

#[test]
fn the_drain_is_over_as_soon_as_nothing_is_open_but_not_before_the_delay() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    let waits = Step::Wait {
        until: t0 + 5 * S,
        or_none_open: false,
    };
    assert_eq!(
        m.step(t0 + S, 0, 0),
        waits,
        "new connections may still come"
    );
    assert_eq!(m.step(t0 + 5 * S, 0, 0), Step::StopAccepting);
    assert_eq!(m.step(t0 + 5 * S, 0, 0), Step::Done);

    let mut m = machine(t0);
    assert_eq!(m.step(t0 + 5 * S, 2, 2), Step::StopAccepting);
    assert_eq!(m.step(t0 + 5 * S, 2, 2), Step::Close { n: 1 });
    assert_eq!(m.step(t0 + 6 * S, 0, 0), Step::Done, "both left early");
}

#[test]
fn a_zero_delay_and_zero_grace_close_and_cut_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(t0, Duration::ZERO, Duration::ZERO);
    assert_eq!(m.step(t0, 3, 3), Step::StopAccepting);
    assert_eq!(m.step(t0, 3, 3), Step::Cut);
    assert_eq!(m.step(t0, 3, 3), Step::Done);

    let mut m = Machine::new(t0, Duration::ZERO, ms(1));
    assert_eq!(m.step(t0, 3, 3), Step::StopAccepting);
    assert_eq!(m.step(t0, 3, 3), Step::Close { n: 1 });
    let later = t0 + Duration::from_micros(400);
    assert_eq!(
        m.step(later, 3, 3),
        Step::Close { n: 2 },
        "over half a millisecond"
    );
}

#[test]
fn closes_are_spread_evenly_and_every_due_time_is_reached() {
    for (n, spread) in [(1, ms(10)), (3, ms(10)), (7, S), (1000, 15 * S), (5, ms(1))] {
        let offsets: Vec<Duration> = (0..n).map(|i| offset(i, n, spread)).collect();
        assert_eq!(offsets[0], Duration::ZERO);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        assert!(*offsets.last().unwrap() < spread);
        for (i, at) in offsets.iter().enumerate() {
            assert!(
                due(*at, n, spread) > i,
                "close {i} of {n} is due at its own time"
            );
            if let Some(before) = at.checked_sub(Duration::from_nanos(1)) {
                assert!(
                    due(before, n, spread) <= i,
                    "close {i} of {n} is not due before it"
                );
            }
        }
        let gap = spread.as_secs_f64() / n as f64;
        for w in offsets.windows(2) {
            assert!(
                ((w[1] - w[0]).as_secs_f64() - gap).abs() < 1e-8,
                "even gaps"
            );
        }
    }
}
