//! veer's data plane: the hyper server that takes client requests, the upstream
//! clients that forward them, and the reloadable, compiled routes both work from.
//!
//! A connection's way in ([`server`]): accepted within the listener's
//! `max_connections` (else 503), TLS-terminated on the HTTPS listener (`tls`), and
//! kept on its own clock (`connection`): a head must arrive within
//! `header_read_timeout` (else 408), an idle connection closes after
//! `idle_timeout`, a client that stops reading is cut off.
//!
//! A request's way through this crate, top to bottom in `Proxy::handle`:
//!
//! 1. load the current [`Snapshot`] once ([`Routes::load`]); the request keeps it to
//!    its end, whatever reloads happen meanwhile. A snapshot is a set of compiled
//!    routes, each with its rule, settings and handles to what it records into;
//! 2. refuse an ambiguous head (two Hosts) and resolve dot-segments (`headers`,
//!    `path`), then ask the snapshot for a decision: which route, which backend
//!    (one ejected by outlier detection, `health`, gives way), mirrored or not
//!    ([`veer_route`]);
//! 3. bound the client's body in size and silence (`upload`), take the backend's
//!    in-flight permit, rewrite the head for the upstream (`headers`); when the
//!    request is mirrored, buffer its body (bounded in size and time) and start the
//!    shadow as a detached task under the shadow's in-flight permit (`shadow`);
//! 4. forward, body streaming, under the backend's timeout, over veer's own
//!    keep-alive pool for an HTTP/1.1 backend or hyper-util's client for an HTTP/2
//!    one (`upstream`), retrying once what cannot have been answered (`forward`);
//! 5. stream the upstream answer back (teed for the shadow's comparison when
//!    mirrored, `body`), or answer with a short JSON body naming whose doing the
//!    failure was ([`ProxyError`], [`Blame`]);
//! 6. record the exchange on the route's handles ([`veer_telemetry`]), at once, or
//!    for a gRPC call when its trailers say how it went (`grpc`). A client's fault
//!    is never the backend's.
//!
//! The live answer never waits on the shadow: nothing on the live path awaits a
//! shadow future, and shadow pairs are judged on a pool of threads of their own
//! (`pool`), never on the async workers.
//!
//! A route with a rollout takes its candidate's weight from the rollout's state
//! (`rollout`): [`drive_rollouts`] judges every rollout every 5 s (and at once on a
//! candidate failure) with the pure `veer_rollout` crate, and a decision that moves
//! the weight swaps in a re-weighed snapshot through the reload lock. A share of
//! requests may also go a second time to their live backend, as the noise floor
//! the prediction gate judges above (`compare.noise_percent`).
//!
//! Long-lived things (upstream clients, backend permits and health, shadow
//! limiters, divergence logs, telemetry series, rollout progress) live in a registry owned by
//! [`Routes`], keyed by their full settings and carried across reloads; every
//! reload goes through one serialised path ([`Routes::reload`]), which also re-reads
//! the files the config names (certificates, keys, the admin token).

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
mod rollout;
mod routes;
pub mod server;
mod shadow;
mod silence;
mod snapshot;
mod tls;
mod upload;
mod upstream;

pub use error::{Blame, ProxyError, UpstreamError};
pub use proxy::Proxy;
pub use registry::RegistrySize;
pub use rollout::{drive as drive_rollouts, saved_progress, RolloutError, RolloutGauge};
pub use routes::{RejectedChange, ReloadError, Reloaded, Routes};
pub use snapshot::{Snapshot, Source, UnusableFile};
pub use upload::ClientFault;
