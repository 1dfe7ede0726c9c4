//! veer's data plane: the hyper server that takes client requests, the upstream pool
//! that forwards them, and the reloadable, compiled routes both work from.
//!
//! A request's way through this crate, top to bottom in `Proxy::handle`:
//!
//! 1. load the current [`Snapshot`] once ([`Routes::load`]); the request keeps it to
//!    its end, whatever reloads happen meanwhile. A snapshot is a set of compiled
//!    routes, each with its rule, settings and handles to what it records into;
//! 2. ask it for a decision: which route, which backend, mirrored or not
//!    ([`veer_route`]);
//! 3. rewrite the head for the upstream (`headers`); when the request is mirrored,
//!    buffer its body (bounded in size and time) and start the shadow as a detached
//!    task under the backend's in-flight permit (`shadow`);
//! 4. forward, body streaming, under the backend's timeout (`forward`);
//! 5. stream the upstream answer back (teed for the shadow's comparison when
//!    mirrored, `body`), or answer 404/502/504 with a short JSON body naming the
//!    backend ([`ProxyError`]);
//! 6. record the exchange on the route's handles ([`veer_telemetry`]).
//!
//! The live answer never waits on the shadow: nothing on the live path awaits a
//! shadow future, and shadow pairs are judged on a pool of threads of their own
//! (`pool`), never on the async workers.
//!
//! Long-lived things (shadow limiters, divergence logs, telemetry series) live in a
//! registry owned by [`Routes`], keyed by their full settings and carried across
//! reloads; every reload goes through one serialised path ([`Routes::reload`]).
//! [`server`] runs the accept loop for this and every other listener.

mod body;
mod connection;
mod divergence;
mod error;
mod forward;
mod grpc;
mod headers;
mod health;
mod path;
mod pool;
mod proxy;
mod registry;
mod routes;
pub mod server;
mod shadow;
mod silence;
mod snapshot;
mod tls;
mod upload;

pub use error::{Blame, ProxyError, UpstreamError};
pub use proxy::Proxy;
pub use registry::RegistrySize;
pub use routes::{RejectedChange, ReloadError, Reloaded, Routes};
pub use snapshot::{Snapshot, Source, UnusableFile};
pub use upload::ClientFault;
