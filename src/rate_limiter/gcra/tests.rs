use super::*;
use proptest::prelude::*;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// Ten a second, in bursts of up to three: a token every 100 ms, a bucket of 300 ms.
fn ten_a_second() -> Rate {
    Rate::new(10, S, 3)
}

#[test]
fn decide_table() {
    let r = ten_a_second();
    // (tat, now, cost, max_wait) -> decision
    let cases = [
        // A fresh bucket (TAT at the origin) holds the whole burst.
        ((0, 0, 1, 0), Decision::Admit { tat: 100 * MS }),
        ((0, 0, 3, 0), Decision::Admit { tat: 300 * MS }),
        // A TAT far behind `now` is a full bucket, never more.
        (
            (0, 50 * S, 3, 0),
            Decision::Admit {
                tat: 50 * S + 300 * MS,
            },
        ),
        // Empty (TAT a full capacity ahead): the next token comes in 100 ms.
        (
            (300 * MS, 0, 1, 0),
            Decision::Refuse {
                retry_after_ns: 100 * MS,
            },
        ),
        (
            (300 * MS, 0, 1, 100 * MS),
            Decision::Wait {
                tat: 400 * MS,
                wait_ns: 100 * MS,
            },
        ),
        (
            (300 * MS, 0, 1, 99 * MS),
            Decision::Refuse {
                retry_after_ns: 100 * MS,
            },
        ),
        // Two tokens left: a cost of 3 waits for the third.
        (
            (100 * MS, 0, 3, 0),
            Decision::Refuse {
                retry_after_ns: 100 * MS,
            },
        ),
        ((100 * MS, 0, 2, 0), Decision::Admit { tat: 300 * MS }),
        // Exactly at the edge (the token comes in as the call does): admitted.
        (
            (300 * MS, 100 * MS, 1, 0),
            Decision::Admit { tat: 400 * MS },
        ),
        // A token short of it: refused until that token comes in.
        (
            (400 * MS, 100 * MS, 1, 0),
            Decision::Refuse {
                retry_after_ns: 100 * MS,
            },
        ),
        // Above the burst: never, whatever the wait.
        ((0, 0, 4, u64::MAX), Decision::Never),
        // A zero cost is always admitted and moves nothing, even past the capacity (waiters
        // holding turns).
        ((900 * MS, 0, 0, 0), Decision::Admit { tat: 900 * MS }),
        ((300 * MS, 0, 0, 0), Decision::Admit { tat: 300 * MS }),
    ];
    for ((tat, now, cost, wait), expected) in cases {
        assert_eq!(
            decide(tat, now, cost, r, wait),
            expected,
            "tat {tat}, now {now}, cost {cost}, wait {wait}"
        );
    }
}

#[test]
fn the_emission_interval_rounds_up_so_the_rate_is_never_exceeded() {
    let third = Rate::new(3, S, 1);
    assert_eq!(third.emission_ns(), 333_333_334);
    // Sub-unit rates: a period shorter than the count still spaces calls a nanosecond apart.
    assert_eq!(Rate::new(1000, 10, 1).emission_ns(), 1);
    // Out-of-range inputs are clamped, never overflow.
    let huge = Rate::new(1, u64::MAX, u32::MAX);
    assert!(u64::from(huge.burst()) * huge.emission_ns() <= Rate::MAX_SPAN_NS);
    assert_eq!(Rate::new(0, S, 0).burst(), 1);
}

#[test]
fn extreme_readings_and_waits_never_overflow() {
    let r = Rate::new(1, 1, u32::MAX);
    for tat in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
        for now in [0, 1, u64::MAX / 2, u64::MAX] {
            for cost in [0, 1, u32::MAX] {
                for max_wait in [0, 1, u64::MAX] {
                    // A TAT of `u64::MAX` is a retired word, which `decide` is not given
                    // for a retirable one; no admission moves a word there.
                    match decide(tat, now, cost, r, max_wait) {
                        Decision::Admit { tat: moved } => {
                            assert!(moved >= tat.min(now).min(LAST_TAT));
                            assert!(cost == 0 || moved != RETIRED, "{tat} {now} {cost}");
                        }
                        Decision::Wait {
                            tat: moved,
                            wait_ns,
                        } => {
                            assert!(wait_ns > 0 && wait_ns <= max_wait);
                            assert!(moved >= tat.min(LAST_TAT) && moved != RETIRED);
                        }
                        Decision::Refuse { retry_after_ns } => {
                            assert!(retry_after_ns > max_wait)
                        }
                        Decision::Never => assert!(cost > r.burst()),
                        Decision::Retired => panic!("only a retired word says so"),
                    }
                    for lag in [0, 1, u64::MAX] {
                        if let Some(Decision::Admit { tat: moved }) =
                            decide_lagging(tat, now, lag, cost, r, max_wait)
                        {
                            assert!(cost == 0 || moved != RETIRED);
                        }
                    }
                }
                assert!(tokens(tat, now, r) <= r.burst());
            }
        }
    }
}

#[test]
fn tokens_count_what_the_bucket_holds() {
    let r = ten_a_second();
    assert_eq!(tokens(0, 0, r), 3);
    assert_eq!(tokens(100 * MS, 0, r), 2);
    assert_eq!(tokens(300 * MS, 0, r), 0);
    assert_eq!(tokens(350 * MS, 100 * MS, r), 0, "half a token is none");
    assert_eq!(tokens(350 * MS, 150 * MS, r), 1);
    // A TAT past a full capacity ahead (waiters holding turns) is an empty bucket.
    assert_eq!(tokens(900 * MS, 0, r), 0);
}

#[test]
fn a_reservation_is_given_back_only_while_it_is_the_latest() {
    let r = Rate::new(1, S, 1);
    let g = Gcra::new();
    assert_eq!(g.acquire(0, 1, r, 0), Decision::Admit { tat: S });
    let Decision::Wait { tat: first, .. } = g.acquire(0, 1, r, 5 * S) else {
        panic!("the next second can be reserved");
    };
    let Decision::Wait { tat: second, .. } = g.acquire(0, 1, r, 5 * S) else {
        panic!("and the one after");
    };
    assert!(
        !g.give_back(first, 1, r),
        "a later reservation stands behind it"
    );
    assert!(g.give_back(second, 1, r));
    // The second's turn is free again: a newcomer waits as long as it did.
    assert_eq!(
        g.acquire(0, 1, r, 5 * S),
        Decision::Wait {
            tat: second,
            wait_ns: 2 * S
        }
    );
}

/// A token bucket kept the plain way, as the reference: a level in nanoseconds of refill
/// (one token is `emission` of it), refilled as time passes and capped at the burst.
#[derive(Debug)]
struct Bucket {
    level_ns: u64,
    at_ns: u64,
    emission_ns: u64,
    burst: u32,
}

impl Bucket {
    fn new(rate: Rate) -> Bucket {
        Bucket {
            level_ns: u64::from(rate.burst()) * rate.emission_ns(),
            at_ns: 0,
            emission_ns: rate.emission_ns(),
            burst: rate.burst(),
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let full = u64::from(self.burst) * self.emission_ns;
        self.level_ns = (self.level_ns + (now_ns - self.at_ns)).min(full);
        self.at_ns = now_ns;
    }

    /// Admitted now, or the wait until the level would reach the cost. The model never
    /// reserves, so it is compared with callers that do not wait.
    fn take(&mut self, now_ns: u64, cost: u32) -> Result<(), Option<u64>> {
        self.refill(now_ns);
        if cost > self.burst {
            return Err(None);
        }
        let need = u64::from(cost) * self.emission_ns;
        if self.level_ns >= need {
            self.level_ns -= need;
            Ok(())
        } else {
            Err(Some(need - self.level_ns))
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Acquire(u32),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..400 * MS).prop_map(Op::Advance),
            (0u32..6).prop_map(Op::Acquire),
        ],
        1..200,
    )
}

proptest! {
    #[test]
    fn gcra_admits_and_refuses_as_a_token_bucket_does(
        count in 1u32..50,
        period_ms in 1u64..5_000,
        burst in 1u32..5,
        ops in ops(),
    ) {
        let rate = Rate::new(count, period_ms * MS, burst);
        let (gcra, mut model, mut now) = (Gcra::new(), Bucket::new(rate), 0u64);
        for op in ops {
            match op {
                Op::Advance(d) => now += d,
                Op::Acquire(cost) => {
                    let got = gcra.acquire(now, cost, rate, 0);
                    let want = model.take(now, cost);
                    match (got, want) {
                        (Decision::Admit { .. }, Ok(())) => {}
                        (Decision::Refuse { retry_after_ns }, Err(Some(wait))) => {
                            prop_assert_eq!(retry_after_ns, wait);
                        }
                        (Decision::Never, Err(None)) => {}
                        (got, want) => prop_assert!(false, "at {}: {:?} against {:?}", now, got, want),
                    }
                    prop_assert_eq!(
                        gcra.tokens(now, rate),
                        (model.level_ns / rate.emission_ns()) as u32
                    );
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn a_lagging_decision_holds_for_every_exact_reading_it_covers(
        count in 1u32..100,
        period_ms in 1u64..2_000,
        burst in 1u32..6,
        tat in 0u64..10 * S,
        recent in 0u64..10 * S,
        lag in 0u64..20 * MS,
        into_lag in 0.0f64..=1.0,
        cost in 0u32..8,
        max_wait in prop_oneof![Just(0u64), 0u64..S],
    ) {
        let rate = Rate::new(count, period_ms * MS, burst);
        let now = recent + (lag as f64 * into_lag) as u64;
        let exact = decide(tat, now, cost, rate, max_wait);
        match decide_lagging(tat, recent, lag, cost, rate, max_wait) {
            None => {}
            Some(Decision::Refuse { retry_after_ns }) => match exact {
                Decision::Refuse { retry_after_ns: exact_after } => {
                    prop_assert!(exact_after <= retry_after_ns, "never shorter");
                    prop_assert!(retry_after_ns - exact_after <= lag, "at most the lag longer");
                }
                other => prop_assert!(false, "lagging refused, exact {:?}", other),
            },
            Some(sure) => prop_assert_eq!(sure, exact),
        }
    }
}

#[test]
fn a_lagging_reading_settles_refusals_and_admissions_into_a_bucket_that_is_not_full() {
    let r = ten_a_second();
    // Empty bucket (TAT 300 ms ahead), a 4 ms lag: refused, counted from the earliest reading.
    assert_eq!(
        decide_lagging(300 * MS, 0, 4 * MS, 1, r, 0),
        Some(Decision::Refuse {
            retry_after_ns: 100 * MS
        })
    );
    // Two tokens left and the TAT past the latest reading: admitted, whatever the reading.
    assert_eq!(
        decide_lagging(100 * MS, 0, 4 * MS, 1, r, 0),
        Some(Decision::Admit { tat: 200 * MS })
    );
    // A TAT inside the lag: the bucket may be full, the exact reading decides.
    assert_eq!(decide_lagging(2 * MS, 0, 4 * MS, 1, r, 0), None);
    // A wait that max_wait may or may not cover within the lag: the exact reading decides.
    assert_eq!(decide_lagging(300 * MS, 0, 4 * MS, 1, r, 98 * MS), None);
}
