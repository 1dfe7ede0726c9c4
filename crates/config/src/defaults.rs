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
