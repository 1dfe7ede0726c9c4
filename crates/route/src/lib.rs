//! veer's routing decisions, pure: a request head and a source of randomness in, a
//! [`Decision`] out. No sockets, no clocks, no globals.
//!
//! On a request's way this is step 3: the proxy has loaded the current snapshot, whose
//! compiled routes each hold a [`Rule`] (built once per config generation from a
//! validated [`veer_config::Route`]), and [`decide`] finds which route takes the
//! request ([`matcher`]) and which backend of that route's split serves it ([`split`]). Sticky splits hash the user's key with a function that
//! is fixed across processes, machines and releases ([`sticky`]), so every replica with
//! the same config sends a user to the same version.

pub mod matcher;
pub mod split;
pub mod sticky;
mod table;

pub use split::Split;
pub use table::{decide, Decision, Pick, RequestHead, RouteId, Rule};
