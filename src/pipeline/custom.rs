//! The order of a pipeline's policies: the recommended one, or a
//! [`build_in_order`](super::PipelineBuilder::build_in_order) asked for by name (and checked by
//! the builder). Either way a call runs through the same
//! [`RunFuture`](super::future::RunFuture): in the recommended order straight through, in a
//! custom one reading the order at each level; neither costs an allocation or a lock.

/// A policy's place in a [`build_in_order`](super::PipelineBuilder::build_in_order).
///
/// # Examples
///
/// ```
/// use palisade::pipeline::{Pipeline, Stage};
/// use palisade::{bulkhead::Bulkhead, retry::Retry};
///
/// let builder = Pipeline::builder()
///     .retry(Retry::new(Retry::builder().build()?))
///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?));
/// // Every configured policy must be named, once.
/// let missing = builder.build_in_order(&[Stage::Bulkhead]).unwrap_err();
/// assert_eq!(missing.field(), "order");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The [`Retry`](crate::retry::Retry).
    Retry,
    /// The [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker).
    CircuitBreaker,
    /// The [`RateLimiter`](crate::rate_limiter::RateLimiter).
    RateLimiter,
    /// The [`Bulkhead`](crate::bulkhead::Bulkhead).
    Bulkhead,
    /// The [`Timeout`](crate::timeout::Timeout).
    Timeout,
}

// One place per `Stage` variant: an order names each at most once.
const STAGES: usize = 5;
const ABSENT: u8 = u8::MAX;

/// Policies outermost first, each at most once: level `i` is `at[i]`, and level `len` is the
/// call itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Order {
    at: [Stage; STAGES],
    len: u8,
    // The level of each stage (indexed by `Stage as usize`), or `ABSENT`.
    level: [u8; STAGES],
    // The recommended order, or what is left of it: the stages come in `Stage`'s own order,
    // so a call may run them straight through without reading the order.
    recommended: bool,
}

impl Order {
    /// Retry, circuit breaker, rate limiter, bulkhead, timeout; see the module docs of
    /// [`pipeline`](super) for why.
    pub(crate) const RECOMMENDED: Order = Order::with(
        &[
            Stage::Retry,
            Stage::CircuitBreaker,
            Stage::RateLimiter,
            Stage::Bulkhead,
            Stage::Timeout,
        ],
        true,
    );

    /// `stages`, which name each stage at most once (so there are at most five).
    pub(super) const fn new(stages: &[Stage]) -> Order {
        Order::with(stages, false)
    }

    const fn with(stages: &[Stage], recommended: bool) -> Order {
        let mut order = Order {
            at: [Stage::Retry; STAGES],
            len: 0,
            level: [ABSENT; STAGES],
            recommended,
        };
        let mut i = 0;
        while i < stages.len() {
            order = order.push(stages[i]);
            i += 1;
        }
        order
    }

    const fn push(mut self, stage: Stage) -> Order {
        self.at[self.len as usize] = stage;
        self.level[stage as usize] = self.len;
        self.len += 1;
        self
    }

    /// The stages `keep` keeps, in the same order.
    pub(crate) fn filter(self, keep: impl Fn(Stage) -> bool) -> Order {
        self.stages()
            .filter(|&stage| keep(stage))
            .fold(Order::with(&[], self.recommended), Order::push)
    }

    /// Whether this is the recommended order, or what is left of it.
    #[inline]
    pub(crate) fn is_recommended(self) -> bool {
        self.recommended
    }

    /// Whether the order has `stage`.
    #[inline]
    pub(crate) fn has(self, stage: Stage) -> bool {
        self.level[stage as usize] != ABSENT
    }

    /// The stages, outermost first.
    pub(crate) fn stages(self) -> impl ExactSizeIterator<Item = Stage> + DoubleEndedIterator {
        self.at.into_iter().take(self.len as usize)
    }

    /// The stages inside `level` (below it), outermost first.
    pub(crate) fn inside(self, level: u8) -> impl DoubleEndedIterator<Item = Stage> {
        self.stages().skip(level as usize + 1)
    }

    /// The stage at `level`; `None` for the call, past the last one.
    #[inline]
    pub(crate) fn at(self, level: u8) -> Option<Stage> {
        (level < self.len).then(|| self.at[level as usize])
    }

    /// The level of `stage`, if the order has it.
    #[inline]
    pub(crate) fn level(self, stage: Stage) -> Option<u8> {
        let level = self.level[stage as usize];
        (level != ABSENT).then_some(level)
    }

    /// The level of the call (one past the last stage).
    #[inline]
    pub(crate) fn call(self) -> u8 {
        self.len
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_order_keeps_the_order_and_finds_each_level() {
        let order = Order::RECOMMENDED.filter(|s| s != Stage::CircuitBreaker);
        assert_eq!(
            order.stages().collect::<Vec<_>>(),
            [
                Stage::Retry,
                Stage::RateLimiter,
                Stage::Bulkhead,
                Stage::Timeout
            ]
        );
        assert_eq!(order.level(Stage::Timeout), Some(3));
        assert_eq!(order.level(Stage::CircuitBreaker), None);
        assert_eq!(order.at(4), None, "level 4 is the call");
        assert_eq!(order.call(), 4);
        assert_eq!(
            order.inside(0).collect::<Vec<_>>(),
            [Stage::RateLimiter, Stage::Bulkhead, Stage::Timeout]
        );
    }

    #[test]
    fn only_the_recommended_order_and_its_parts_run_straight_through() {
        let part = Order::RECOMMENDED.filter(|s| s != Stage::Retry);
        assert!(part.is_recommended());
        assert!(part.has(Stage::Timeout) && !part.has(Stage::Retry));
        let stages: Vec<_> = part.stages().collect();
        assert!(
            stages.windows(2).all(|w| (w[0] as u8) < (w[1] as u8)),
            "a straight run takes the stages in `Stage`'s order"
        );
        let same = Order::new(&[Stage::Retry, Stage::CircuitBreaker]);
        assert!(
            !same.is_recommended(),
            "a custom order reads the order at each level, even one that looks recommended"
        );
        assert!(!same.filter(|_| true).is_recommended());
    }
}
