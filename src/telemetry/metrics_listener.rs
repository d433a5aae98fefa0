//! Events recorded through the [`metrics`] facade.

use super::circuit_state::CircuitState;
use crate::error::{FullCause, LinkFailure, Rejected};

use super::{Event, EventKind, FailDecision, GiveUp, Listener, PolicyKind};

/// A listener that records every event through the [`metrics`] facade, for whichever
/// recorder the process installed (Prometheus, StatsD, OpenTelemetry exporters...).
///
/// Every series is named `palisade_*` and labelled `policy` (the policy's name); some carry
/// one more label:
///
/// | series | kind | extra label | from |
/// |---|---|---|---|
/// | `palisade_timeouts_total` | counter | | a timeout cut a call short |
/// | `palisade_rejections_total` | counter | `reason` = `circuit_open`, `bulkhead_full`, `bulkhead_wait`, `timeout`, `rate_limited`, `too_many_keys`, `unavailable` | a policy refused a call |
/// | `palisade_circuit_state` | gauge | | 0 closed, 1 half-open, 2 open, 3 isolated, 4 disabled; not set by breakers kept per key (see below) |
/// | `palisade_circuit_transitions_total` | counter | `to` = the new state | a breaker changed state |
/// | `palisade_calls_total` | counter | `outcome` = `success`, `failure` | a breaker counted a call |
/// | `palisade_slow_calls_total` | counter | | a breaker counted a slow call |
/// | `palisade_retries_total` | counter | | a retry was scheduled |
/// | `palisade_retry_delay_seconds` | histogram | | the wait before that retry |
/// | `palisade_retry_recovered_total` | counter | | a call succeeded after retrying |
/// | `palisade_retry_give_ups_total` | counter | `reason` = `attempts_exhausted`, `deadline`, `budget`, `not_retryable`, `not_cloneable` | a retry stopped without a success |
/// | `palisade_retry_attempts` | histogram | | attempts of a call that retried or gave up |
/// | `palisade_fallbacks_total` | counter | `level` = 1, 2, ... | a fallback level served the call |
/// | `palisade_bulkhead_in_flight` | gauge | | calls holding a slot |
/// | `palisade_link_failures_total` | counter | `cause` = `connection`, `timeout`, `server`, `malformed_reply`, `breaker_open`; `decided` = `admitted`, `refused`, `local` | a fleet-wide limit decided by its fail mode |
///
/// Breakers kept per key by a [`Keyed`](crate::keyed::Keyed) map (one per host) report
/// under their map's policy name, and one series cannot hold many keys' states: their
/// transitions are counted in `palisade_circuit_transitions_total`, but they leave
/// `palisade_circuit_state` alone (it keeps the value the map's prototype breaker set when
/// it was built). Read how many are open from
/// [`Keyed::open_breakers`](crate::keyed::Keyed::open_breakers) or the
/// [health report](crate::health), which counts them; a label per key would give the
/// recorder a series per host ever seen.
///
/// Names follow the Prometheus conventions (`_total` counters, base units in the name), so
/// they read the same through any exporter. A series is only touched when its event
/// happens; nothing is recorded on a call that no policy had to act on (except the breaker's
/// and bulkhead's per-call series, which are what they count).
///
/// # Cost
///
/// Unlike the policies' own hot paths, the `metrics` facade looks series up by key on every
/// event, which may allocate depending on the recorder. Attach it where that is acceptable,
/// or read the allocation-free snapshots (`metrics()` on each handle) on a timer instead.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::MetricsListener;
/// use palisade::circuit_breaker::CircuitBreaker;
///
/// let breaker = CircuitBreaker::new(
///     CircuitBreaker::builder().name("payments").listener(MetricsListener).build()?,
/// );
/// breaker.isolate(); // palisade_circuit_state{policy="payments"} = 3
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsListener;

impl Listener for MetricsListener {
    fn on_event(&self, event: &Event) {
        let policy = event.policy_name();
        match event.kind() {
            // Gauges exist from the start, so a dashboard shows a closed breaker and an idle
            // bulkhead before any call. The bulkhead's is moved by nothing: another bulkhead of
            // the same name may already have calls in flight.
            EventKind::Created { kind } => match kind {
                PolicyKind::CircuitBreaker => {
                    metrics::gauge!("palisade_circuit_state", "policy" => policy)
                        .set(state_gauge(CircuitState::Closed));
                }
                PolicyKind::Bulkhead => {
                    metrics::gauge!("palisade_bulkhead_in_flight", "policy" => policy)
                        .increment(0.0);
                }
                _ => {}
            },
            EventKind::TimedOut { .. } => {
                metrics::counter!("palisade_timeouts_total", "policy" => policy).increment(1);
            }
            EventKind::Rejected(rejected) => {
                let reason = rejection_reason(&rejected);
                metrics::counter!("palisade_rejections_total", "policy" => policy, "reason" => reason)
                    .increment(1);
            }
            EventKind::StateChanged { to, .. } => {
                // A per-key breaker's state would overwrite its siblings' (see the type's docs).
                if event.key().is_none() {
                    metrics::gauge!("palisade_circuit_state", "policy" => policy)
                        .set(state_gauge(to));
                }
                metrics::counter!("palisade_circuit_transitions_total", "policy" => policy, "to" => state_label(to))
                    .increment(1);
            }
            EventKind::CallRecorded { failure, slow } => {
                let outcome = if failure { "failure" } else { "success" };
                metrics::counter!("palisade_calls_total", "policy" => policy, "outcome" => outcome)
                    .increment(1);
                if slow {
                    metrics::counter!("palisade_slow_calls_total", "policy" => policy).increment(1);
                }
            }
            EventKind::RetryScheduled { delay, .. } => {
                metrics::counter!("palisade_retries_total", "policy" => policy).increment(1);
                metrics::histogram!("palisade_retry_delay_seconds", "policy" => policy)
                    .record(delay.as_secs_f64());
            }
            EventKind::RetrySucceeded { attempts } => {
                metrics::counter!("palisade_retry_recovered_total", "policy" => policy)
                    .increment(1);
                metrics::histogram!("palisade_retry_attempts", "policy" => policy)
                    .record(f64::from(attempts));
            }
            EventKind::RetryGaveUp { attempts, reason } => {
                metrics::counter!("palisade_retry_give_ups_total", "policy" => policy, "reason" => give_up_label(reason))
                    .increment(1);
                metrics::histogram!("palisade_retry_attempts", "policy" => policy)
                    .record(f64::from(attempts));
            }
            EventKind::FallbackUsed { level } => {
                metrics::counter!("palisade_fallbacks_total", "policy" => policy, "level" => level.to_string())
                    .increment(1);
            }
            // Moved by one per event rather than set from the event's count: that count is read
            // beside the slot's own update, so two events can carry the same value, and a late
            // one would overwrite a newer gauge.
            EventKind::LinkFailed { cause, decided } => {
                let decided = match decided {
                    FailDecision::Admitted => "admitted",
                    FailDecision::Refused => "refused",
                    _ => "local",
                };
                metrics::counter!("palisade_link_failures_total", "policy" => policy, "cause" => link_failure_label(cause), "decided" => decided)
                    .increment(1);
            }
            EventKind::BulkheadAdmitted { .. } => {
                metrics::gauge!("palisade_bulkhead_in_flight", "policy" => policy).increment(1.0);
            }
            EventKind::BulkheadReleased { .. } => {
                metrics::gauge!("palisade_bulkhead_in_flight", "policy" => policy).decrement(1.0);
            }
        }
    }
}

fn link_failure_label(cause: LinkFailure) -> &'static str {
    match cause {
        LinkFailure::Connection => "connection",
        LinkFailure::Timeout => "timeout",
        LinkFailure::Server => "server",
        LinkFailure::MalformedReply => "malformed_reply",
        _ => "breaker_open",
    }
}

fn rejection_reason(rejected: &Rejected) -> &'static str {
    match rejected {
        Rejected::CircuitOpen(_) => "circuit_open",
        Rejected::BulkheadFull(full) if full.cause() == FullCause::WaitTimedOut => "bulkhead_wait",
        Rejected::BulkheadFull(_) => "bulkhead_full",
        Rejected::Timeout(_) => "timeout",
        Rejected::RateLimited(_) => "rate_limited",
        Rejected::TooManyKeys(_) => "too_many_keys",
        Rejected::Unavailable(_) => "unavailable",
    }
}

/// The gauge's value for a state, ordered from healthy to forced.
fn state_gauge(state: CircuitState) -> f64 {
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
        CircuitState::Isolated => 3.0,
        CircuitState::Disabled => 4.0,
    }
}

fn state_label(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "closed",
        CircuitState::HalfOpen => "half_open",
        CircuitState::Open => "open",
        CircuitState::Isolated => "isolated",
        CircuitState::Disabled => "disabled",
    }
}

fn give_up_label(reason: GiveUp) -> &'static str {
    match reason {
        GiveUp::AttemptsExhausted => "attempts_exhausted",
        GiveUp::Deadline => "deadline",
        GiveUp::Budget => "budget",
        GiveUp::NotRetryable => "not_retryable",
        GiveUp::NotCloneable => "not_cloneable",
    }
}
