//! veer's data plane: the hyper server that takes client requests, the pooled client
//! that forwards them, and the reloadable snapshot of routes both work from.
//!
//! A request's way through this crate, top to bottom in [`Proxy::handle`]:
//!
//! 1. load the current [`Snapshot`] once ([`Routes::load`]); the request keeps it to
//!    its end, whatever reloads happen meanwhile;
//! 2. ask it for a [`veer_route::Decision`]: which route, which backend;
//! 3. rewrite the head for the upstream ([`headers`]) and forward, body streaming,
//!    under the backend's timeout ([`forward`]);
//! 4. stream the upstream answer back, or answer 404/502/504 with a short JSON body
//!    naming the backend ([`error`]).
//!
//! [`server::serve`] runs the accept loop and drains connections on shutdown.

pub mod error;
pub mod forward;
pub mod headers;
mod proxy;
pub mod server;
mod snapshot;

pub use error::ProxyError;
pub use proxy::{Proxy, ProxyBody};
pub use snapshot::{ReloadError, Routes, Snapshot, Upstream};
