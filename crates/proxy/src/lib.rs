//! veer's data plane: the hyper server that takes client requests, the pooled client
//! that forwards them, and the reloadable snapshot of routes both work from.
//!
//! A request's way through this crate, top to bottom in [`Proxy::handle`]:
//!
//! 1. load the current [`Snapshot`] once ([`Routes::load`]); the request keeps it to
//!    its end, whatever reloads happen meanwhile;
//! 2. ask it for a [`veer_route::Decision`]: which route, which backend;
//! 3. rewrite the head for the upstream ([`headers`]); when the request is mirrored,
//!    buffer its body (bounded) and start the shadow as a detached task under the
//!    backend's in-flight limit ([`shadow`]);
//! 4. forward, body streaming, under the backend's timeout ([`forward`]);
//! 5. stream the upstream answer back — teed for the shadow's comparison when
//!    mirrored ([`body::Tee`]) — or answer 404/502/504 with a short JSON body naming
//!    the backend ([`error`]);
//! 6. record the exchange ([`veer_telemetry`]).
//!
//! The live answer never waits on the shadow: nothing on the live path awaits a
//! shadow future; the shadow task waits on the live answer, not the other way round.
//!
//! [`server::serve`] runs the accept loop and drains connections on shutdown.

pub mod body;
pub mod divergence;
pub mod error;
pub mod forward;
pub mod headers;
mod proxy;
pub mod server;
pub mod shadow;
mod snapshot;

pub use error::ProxyError;
pub use proxy::Proxy;
pub use snapshot::{ReloadError, Routes, ShadowResources, Snapshot, Source, Upstream};
