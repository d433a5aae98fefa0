use super::*;

const T: Timing = Timing {
    break_ms: 1_000,
    max_break_ms: 8_000,
    break_factor: 2.0,
    half_open_wait_ms: 500,
    permitted_probes: 2,
    success_threshold: 2,
};

/// A reading of exactly `ms`, on a clock of full precision, not stale.
fn at(ms: u64) -> Now {
    Now::new(ms * 1_000_000, 0, ms)
}

fn closed(epoch: Epoch) -> Word {
    Word::new(CircuitState::Closed, epoch, 0, 0, 0)
}

#[test]
fn fields_round_trip_through_the_word() {
    let w = Word::new(CircuitState::HalfOpen, 4095, 63, 31, DEADLINE_MASK);
    assert_eq!(w.state(), CircuitState::HalfOpen);
    assert_eq!(w.epoch(), 4095);
    assert_eq!(w.probes(), 63);
    assert_eq!(w.reopens(), 31);
    assert_eq!(w.deadline(), DEADLINE_MASK);
    assert_eq!(w.next_epoch(), 0, "the epoch wraps");
    for s in [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::Isolated,
        CircuitState::Disabled,
    ] {
        assert_eq!(Word::new(s, 1, 2, 3, 4).state(), s);
    }
}

#[test]
fn transition_table() {
    struct Case {
        name: &'static str,
        word: Word,
        now_ms: u64,
        want: Admission,
    }
    let open = Word::new(CircuitState::Open, 3, 0, 0, 10_000);
    let half = Word::new(CircuitState::HalfOpen, 4, 1, 0, 10_500);
    let full = Word::new(CircuitState::HalfOpen, 4, 2, 1, 10_500);
    let cases = [
        Case {
            name: "closed admits without change",
            word: closed(7),
            now_ms: 5,
            want: Admission::Admit {
                phase: Phase::Closed,
                epoch: 7,
                next: None,
            },
        },
        Case {
            name: "disabled admits without change",
            word: Word::new(CircuitState::Disabled, 2, 0, 0, 0),
            now_ms: 5,
            want: Admission::Admit {
                phase: Phase::Disabled,
                epoch: 2,
                next: None,
            },
        },
        Case {
            name: "isolated rejects with no retry-after",
            word: Word::new(CircuitState::Isolated, 2, 0, 0, 0),
            now_ms: 5,
            want: Admission::Reject {
                retry_after_ms: None,
                next: None,
            },
        },
        Case {
            name: "open before its deadline rejects with the time left",
            word: open,
            now_ms: 9_250,
            want: Admission::Reject {
                retry_after_ms: Some(750),
                next: None,
            },
        },
        Case {
            name: "open at its deadline half-opens and admits the first probe",
            word: open,
            now_ms: 10_000,
            want: Admission::Admit {
                phase: Phase::Probe,
                epoch: 4,
                next: Some(Word::new(CircuitState::HalfOpen, 4, 1, 0, 10_500)),
            },
        },
        Case {
            name: "half-open with a free slot admits another probe",
            word: half,
            now_ms: 10_100,
            want: Admission::Admit {
                phase: Phase::Probe,
                epoch: 4,
                next: Some(half.with_probes(2)),
            },
        },
        Case {
            name: "half-open with every slot taken rejects until its deadline",
            word: full,
            now_ms: 10_100,
            want: Admission::Reject {
                retry_after_ms: Some(400),
                next: None,
            },
        },
        Case {
            name: "half-open past its deadline re-opens with a longer break",
            word: full,
            now_ms: 10_500,
            want: Admission::Reject {
                retry_after_ms: Some(4_000),
                next: Some(Word::new(CircuitState::Open, 5, 0, 2, 14_500)),
            },
        },
    ];
    for case in cases {
        assert_eq!(
            admit(case.word, at(case.now_ms), &T),
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn trip_needs_the_closed_epoch_the_permit_saw() {
    let w = closed(9);
    assert_eq!(
        trip(w, 9, at(100), &T),
        Some(Word::new(CircuitState::Open, 10, 0, 0, 1_100))
    );
    assert_eq!(
        trip(w, 8, at(100), &T),
        None,
        "a late failure from an older epoch"
    );
    let open = Word::new(CircuitState::Open, 10, 0, 0, 1_100);
    assert_eq!(trip(open, 10, at(100), &T), None);
}

#[test]
fn probes_settle_by_the_success_threshold() {
    let half = Word::new(CircuitState::HalfOpen, 4, 2, 1, 10_500);
    let one_ok = Tally {
        successes: 1,
        failures: 0,
    };
    assert_eq!(
        settle_probe(half, 4, one_ok, at(10_100), &T),
        Some(half.with_probes(1))
    );
    let two_ok = Tally {
        successes: 2,
        failures: 0,
    };
    assert_eq!(
        settle_probe(half, 4, two_ok, at(10_100), &T),
        Some(Word::new(CircuitState::Closed, 5, 0, 0, 0))
    );
    let one_bad = Tally {
        successes: 0,
        failures: 1,
    };
    assert_eq!(
        settle_probe(half, 4, one_bad, at(10_100), &T),
        Some(Word::new(CircuitState::Open, 5, 0, 2, 14_100)),
        "with a threshold of 2 out of 2, one failure re-opens"
    );
    assert_eq!(
        settle_probe(half, 3, two_ok, at(10_100), &T),
        None,
        "stale probe"
    );
}

#[test]
fn release_probe_only_touches_its_own_epoch() {
    let half = Word::new(CircuitState::HalfOpen, 4, 1, 0, 10_500);
    assert_eq!(release_probe(half, 4), Some(half.with_probes(0)));
    assert_eq!(release_probe(half, 3), None);
    assert_eq!(release_probe(half.with_probes(0), 4), None);
    assert_eq!(release_probe(closed(4), 4), None);
}

#[test]
fn break_grows_exponentially_up_to_the_cap() {
    let got: Vec<u64> = (0..6).map(|r| T.break_ms(r)).collect();
    assert_eq!(got, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
    assert_eq!(T.break_ms(MAX_REOPENS), 8_000);
    let fixed = Timing {
        max_break_ms: 1_000,
        ..T
    };
    assert_eq!(fixed.break_ms(5), 1_000);
}

#[test]
fn deadlines_survive_wrapping_and_long_idleness() {
    let near_wrap = DEADLINE_MASK - 10;
    let deadline = near_wrap.wrapping_add(100) & DEADLINE_MASK;
    assert!(!reached(at(near_wrap), deadline));
    assert_eq!(remaining_ms(at(near_wrap), deadline), 100);
    assert!(reached(at(near_wrap + 100), deadline));
    // Idle far longer than any deadline can be ahead: reached, not "almost a cycle ahead".
    assert!(reached(at(deadline + (1 << 37)), deadline));
    assert!(reached(at(deadline + HORIZON_MS * 3), deadline));
}

#[test]
fn surely_open_only_while_the_latest_possible_time_is_before_the_deadline() {
    let open = Word::new(CircuitState::Open, 3, 0, 0, 10_000);
    // (recent_ms, lag_ms, expected): the break ends at 10 000 on the exact clock.
    let cases = [
        (0, 0, Some(10_000)),
        (9_999, 0, Some(1)),
        (10_000, 0, None),
        (10_500, 0, None),
        (9_983, 16, Some(17)),
        (9_984, 16, None),
        (9_000, 16, Some(1_000)),
        (12_000, 16, None),
    ];
    for (recent, lag, want) in cases {
        assert_eq!(
            surely_open(open, recent, lag, recent),
            want,
            "recent {recent} lag {lag}"
        );
    }
    // Only an open breaker is ever settled here.
    for state in [
        CircuitState::HalfOpen,
        CircuitState::Isolated,
        CircuitState::Closed,
    ] {
        assert_eq!(
            surely_open(Word::new(state, 3, 0, 0, 10_000), 0, 0, 0),
            None
        );
    }
    // Across the wrap of the deadline field, in both directions.
    let near_wrap = DEADLINE_MASK - 10;
    let wrapped = Word::new(
        CircuitState::Open,
        1,
        0,
        0,
        (near_wrap + 100) & DEADLINE_MASK,
    );
    assert_eq!(surely_open(wrapped, near_wrap, 16, near_wrap), Some(100));
    assert_eq!(surely_open(wrapped, near_wrap + 90, 16, near_wrap), None);
    // A lagging reading older than the exact one that set a maximal break still counts
    // the whole break, instead of reading the deadline as passed.
    let longest = Word::new(CircuitState::Open, 1, 0, 0, 5 + MAX_DEADLINE_MS);
    assert_eq!(surely_open(longest, 0, 16, 5), Some(MAX_DEADLINE_MS + 5));
}

#[test]
fn force_always_moves_the_epoch_on() {
    let w = Word::new(CircuitState::HalfOpen, 1, 3, 2, 77);
    let isolated = force(w, CircuitState::Isolated).unwrap();
    assert_eq!(isolated, Word::new(CircuitState::Isolated, 2, 0, 0, 0));
    let reset = force(closed(5), CircuitState::Closed).unwrap();
    assert_eq!(
        reset.epoch(),
        6,
        "a reset of a closed breaker still starts a new period"
    );
}

/// The deadline `break_ms` after a trip at `trip_ns`, and whether it is reached at
/// `check_ns`, both on a clock of resolution `res_ns`.
fn trip_then_check(trip_ns: u64, res_ns: u64, check_ns: u64) -> Admission {
    let tripped = trip(closed(0), 0, Now::new(trip_ns, res_ns, 0), &T).unwrap();
    let since = Now::new(trip_ns, res_ns, 0).start_ms;
    admit(tripped, Now::new(check_ns, res_ns, since), &T)
}

#[test]
fn a_break_never_ends_before_its_duration_at_sub_millisecond_offsets() {
    const MS: u64 = 1_000_000;
    // (trip at, clock resolution, earliest admission): the break is 1 000 ms.
    let cases = [
        (0, 0, 1_000 * MS),
        (1, 0, 1_001 * MS),
        (1_999_999, 0, 1_002 * MS),
        (2 * MS, 0, 1_002 * MS),
        // A coarse clock's reading may trail real time by its resolution.
        (100 * MS, 16 * MS, 1_116 * MS),
        (100 * MS + 1, 16 * MS, 1_117 * MS),
    ];
    for (trip_ns, res_ns, first_ns) in cases {
        assert!(
            matches!(
                trip_then_check(trip_ns, res_ns, first_ns - 1),
                Admission::Reject { .. }
            ),
            "trip {trip_ns} res {res_ns}: still open 1 ns before {first_ns}"
        );
        assert!(
            matches!(
                trip_then_check(trip_ns, res_ns, first_ns),
                Admission::Admit {
                    phase: Phase::Probe,
                    ..
                }
            ),
            "trip {trip_ns} res {res_ns}: a probe at {first_ns}"
        );
        // Never before the configured duration of real time, the reading's lag included.
        assert!(first_ns >= trip_ns + res_ns + 1_000 * MS);
    }
}

#[test]
fn an_open_breaker_idle_for_any_multiple_of_the_wrap_admits_a_probe() {
    let wrap = 1u64 << DEADLINE_BITS;
    let start = 5_000;
    let open = trip(closed(0), 0, at(start), &T).unwrap();
    for k in 1..=4u64 {
        for offset in [0, 1, 999, 1_000, 1_001, MAX_DEADLINE_MS] {
            let now_ms = start + k * wrap + offset;
            let now = Now::new(now_ms * 1_000_000, 0, start);
            assert!(now.stale, "{k} wraps + {offset} ms");
            assert!(
                matches!(
                    admit(open, now, &T),
                    Admission::Admit {
                        phase: Phase::Probe,
                        ..
                    }
                ),
                "{k} wraps + {offset} ms after the trip"
            );
            assert_eq!(surely_open(open, now_ms, 16, start), None);
        }
    }
    // Within the horizon the wrapped arithmetic alone decides, exactly.
    let now = Now::new((start + 999) * 1_000_000, 0, start);
    assert!(!now.stale);
    assert_eq!(
        admit(open, now, &T),
        Admission::Reject {
            retry_after_ms: Some(1),
            next: None
        }
    );
}

#[test]
fn a_hung_probe_after_a_wrap_reports_no_day_long_retry_after() {
    let wrap = 1u64 << DEADLINE_BITS;
    let half = Word::new(CircuitState::HalfOpen, 4, 1, 0, 10_500);
    let now = Now::new((10_000 + wrap) * 1_000_000, 0, 10_000);
    // The break that followed the given-up probe is long over: this caller probes.
    assert_eq!(
        admit(half, now, &T),
        Admission::Admit {
            phase: Phase::Probe,
            epoch: 6,
            next: Some(Word::new(
                CircuitState::HalfOpen,
                6,
                1,
                1,
                (10_000 + wrap + 500) & DEADLINE_MASK
            )),
        }
    );
}

#[test]
fn a_quiet_half_open_period_hands_the_probe_to_the_next_caller() {
    // No probe in flight, the wait long over: not a re-open, a new probe with a new wait.
    let quiet = Word::new(CircuitState::HalfOpen, 4, 0, 1, 10_500);
    for now_ms in [10_100, 10_500, 13_000, 500_000] {
        assert_eq!(
            admit(quiet, at(now_ms), &T),
            Admission::Admit {
                phase: Phase::Probe,
                epoch: 4,
                next: Some(Word::new(CircuitState::HalfOpen, 4, 1, 1, now_ms + 500)),
            },
            "at {now_ms}"
        );
        assert_eq!(observed(quiet, at(now_ms), &T), CircuitState::HalfOpen);
    }
}

#[test]
fn hung_probes_reopen_the_breaker_from_the_end_of_the_wait() {
    // One probe in flight, the wait ran out at 10 500; the next break is 2 000 ms.
    let hung = Word::new(CircuitState::HalfOpen, 4, 1, 0, 10_500);
    let reopened = Word::new(CircuitState::Open, 5, 0, 1, 12_500);
    assert_eq!(
        admit(hung, at(11_000), &T),
        Admission::Reject {
            retry_after_ms: Some(1_500),
            next: Some(reopened),
        }
    );
    assert_eq!(observed(hung, at(11_000), &T), CircuitState::Open);
    assert_eq!(observed(hung, at(10_400), &T), CircuitState::HalfOpen);
    // After that break too, the caller half-opens the breaker again and probes.
    assert_eq!(
        admit(hung, at(12_500), &T),
        Admission::Admit {
            phase: Phase::Probe,
            epoch: 6,
            next: Some(Word::new(CircuitState::HalfOpen, 6, 1, 1, 13_000)),
        }
    );
    assert_eq!(observed(hung, at(12_500), &T), CircuitState::HalfOpen);
}

#[test]
fn the_observed_state_is_what_the_next_call_would_find() {
    let open = Word::new(CircuitState::Open, 3, 0, 0, 10_000);
    assert_eq!(observed(open, at(9_999), &T), CircuitState::Open);
    assert_eq!(observed(open, at(10_000), &T), CircuitState::HalfOpen);
    let full = Word::new(CircuitState::HalfOpen, 4, 2, 0, 10_500);
    assert_eq!(observed(full, at(10_100), &T), CircuitState::HalfOpen);
    for state in [
        CircuitState::Closed,
        CircuitState::Isolated,
        CircuitState::Disabled,
    ] {
        assert_eq!(observed(Word::new(state, 1, 0, 0, 0), at(1), &T), state);
    }
}
