//! What most users import: `use palisade::prelude::*;`.
//!
//! The policy handles, the error types and the classifier. Nothing here is only reachable
//! through the prelude.
//!
//! # Examples
//!
//! ```
//! use palisade::prelude::*;
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ConfigError> {
//! let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
//! let fallback: Fallback<u32> = Fallback::new(Fallback::builder().build()?);
//! let answer: Result<u32, Rejected> = fallback
//!     .run(|| breaker.run(|| async { Err(Rejected::from(palisade::error::CircuitOpen::isolated("db"))) }))
//!     .or_value(7)
//!     .await;
//! assert_eq!(answer, Ok(7));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```

pub use crate::bulkhead::Bulkhead;
pub use crate::circuit_breaker::{CircuitBreaker, CircuitState};
pub use crate::classify::{Classifier, DefaultClassifier, Outcome};
pub use crate::error::{AsRejected, ConfigError, Error, Rejected};
pub use crate::fallback::Fallback;
pub use crate::pipeline::Pipeline;
pub use crate::retry::Retry;
pub use crate::timeout::Timeout;
