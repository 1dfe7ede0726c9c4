//! Every default of the routing file, once, with the reason it has that value.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Client traffic: all interfaces, the port model servers and their clients most often
/// expect in front of them.
pub const HTTP_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));

/// Admin traffic (metrics, reload): loopback only, so a default install never exposes
/// its control plane; 9901 is Envoy's admin port, familiar to operators.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));

/// Whole upstream exchange, 30 s: longer than typical model inference p99.99 (large
/// batch or LLM calls included), shorter than a Kubernetes terminationGracePeriod so a
/// draining replica never waits on a request that will not finish.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The sticky hash seed when a route names none. Changing a route's seed re-shuffles
/// which users land on which version; 0 is as good a start as any.
pub const HASH_SEED: u64 = 0;

/// Largest weight accepted. Weights are relative, so this only guards the arithmetic
/// (sums and products stay far inside u64) and catches typos like `weight = 5e9`.
pub const MAX_WEIGHT: u64 = 1_000_000;

/// How long in-flight requests may run after SIGTERM before veer exits anyway: under
/// the 30 s Kubernetes default terminationGracePeriod, with room to spare.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Mirror every request: a shadow is usually turned on to see all of real traffic,
/// and `max_in_flight` already protects the shadow backend.
pub const SHADOW_PERCENT: f64 = 100.0;

/// Shadow requests in flight per shadow backend before further mirrors are dropped:
/// enough for a model server's usual concurrency, small enough that a black-holed
/// shadow holds at most this many buffered bodies.
pub const SHADOW_MAX_IN_FLIGHT: usize = 256;

/// Largest request body copied to a shadow, 1 MiB: covers typical JSON inference
/// payloads; larger ones (images, batches) go live untouched and the mirror is skipped.
pub const SHADOW_MAX_BODY: u64 = 1024 * 1024;

/// Largest live or shadow response kept for comparison, 1 MiB, for the same reason.
pub const COMPARE_MAX_BODY: u64 = 1024 * 1024;

/// Numbers within 1e-6 are equal by default: float32 models serialized by different
/// runtimes differ in the last digits without predicting anything differently.
pub const ABS_TOLERANCE: f64 = 1e-6;

/// No relative tolerance unless asked for.
pub const REL_TOLERANCE: f64 = 0.0;

/// Divergent pairs written to the divergence log per second per route: enough to
/// study, too few to fill a disk or compete with traffic.
pub const DIVERGENCE_LOG_PER_SEC: u32 = 10;

/// The divergence log rotates once it reaches 64 MiB (one previous file is kept).
pub const DIVERGENCE_LOG_MAX: u64 = 64 * 1024 * 1024;
