//! The README, so that every one of its ```rust blocks is compiled and run as a doctest
//! (`cargo test -p palisade-net --doc`).
//!
//! It lives here rather than in palisade's own docs because the snippets use reqwest, tonic
//! and axum, which the root package must not depend on. The snippets are complete programs
//! as a reader pastes them (no hidden lines: GitHub and crates.io show those verbatim), and
//! warnings fail them, so an unused import cannot creep back in. Unused variables are
//! allowed: a snippet may end on the client or router it built.
#![doc(test(attr(deny(warnings), allow(unused_variables))))]
#![doc = include_str!("../../../README.md")]
