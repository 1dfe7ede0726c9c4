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

/// The dashboard shows a route's divergence red above 10 % of compared pairs, when
/// no rollout sets a budget: the share a rollout's prediction gate allows by default
/// ([`ROLLOUT_MAX_DIVERGENCE`]), so a route reads the same before and after a rollout
/// is put on it.
pub const COMPARE_ALERT_DIVERGENCE: f64 = ROLLOUT_MAX_DIVERGENCE;

/// Divergent pairs written to the divergence log per second per route: enough to
/// study, too few to fill a disk or compete with traffic.
pub const DIVERGENCE_LOG_PER_SEC: u32 = 10;

/// The divergence log rotates once it reaches 64 MiB (one previous file is kept).
pub const DIVERGENCE_LOG_MAX: u64 = 64 * 1024 * 1024;

/// Client connections open at once, 10,000: far above what one replica serves well,
/// far below the file-descriptor limit a container gets, so veer stops accepting
/// before the kernel refuses it sockets (upstream ones included).
pub const MAX_CONNECTIONS: usize = 10_000;

/// A request head not complete 10 s after its first byte is a slow client or an
/// attack (slowloris): real clients send a head in one packet.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive client connection idle for 60 s is closed: longer than the idle
/// timeouts of common client pools (Go 90 s is the exception, and it reconnects),
/// short enough that abandoned connections do not pile up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request body that sends nothing for 30 s is stalled: the same budget as a
/// backend's answer, so a slow upload is not cut before a slow model would be.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request body, 16 MiB: inference payloads (JSON, a few images, a batch)
/// fit; anything larger is refused with 413 before it reaches a backend.
pub const MAX_REQUEST_BODY: u64 = 16 * 1024 * 1024;

/// Upper bound of every body-size setting, 1 GiB: veer may buffer a mirrored body
/// whole, and no inference request should come near this.
pub const MAX_BODY_LIMIT: u64 = 1024 * 1024 * 1024;

/// Connecting to a backend, 2 s: a SYN lost once is retransmitted after 1 s, so this
/// survives one loss while a dead backend is still reported quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests in flight to one backend, 1,024: above what one model server serves at
/// once, so it only bites when a backend has stopped answering and requests pile up.
pub const BACKEND_MAX_CONNECTIONS: usize = 1024;

/// Failures in a row (5xx or connect failures) before a backend is ejected: Envoy's
/// `consecutive_5xx` default, enough that one bad request never ejects a backend.
pub const OUTLIER_CONSECUTIVE_FAILURES: u32 = 5;

/// How long an ejected backend first stays out, 30 s (Envoy's base ejection time);
/// each further ejection in a row doubles it, up to [`OUTLIER_MAX_EJECTION`].
pub const OUTLIER_EJECTION: Duration = Duration::from_secs(30);

/// The longest an ejected backend stays out, 5 minutes, so a recovered backend is
/// always tried again within a few minutes.
pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);

/// Admin connections open at once: a few scrapers, probes and browsers; a flood of
/// the client port never reaches this listener, and a flood of this one stays small.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Connections the kernel queues for a listener before veer accepts them, 4,096 (Go
/// and Envoy take `net.core.somaxconn`, which caps this too). The standard library's
/// 128 is too few for a burst of clients (a restarted fleet reconnecting): past it
/// Linux drops handshakes, and those clients wait a second to retry.
pub const LISTEN_BACKLOG: u32 = 4096;

/// HTTP/2 streams per client connection, 256: hyper's default is 200 and nginx's 128;
/// a little room for multiplexing gRPC clients, bounded against stream floods.
pub const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;

/// Most `[runtime] workers`: beyond the cores there are, more threads only take turns;
/// the bound catches a typo (`workers = 40000`) before it spawns threads.
pub const MAX_WORKERS: i64 = 1024;

/// The longest any timeout may be, 1 day: far beyond any sensible deadline, and far
/// inside what the clock arithmetic behind a deadline can hold.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A rollout step lasts at least 2 minutes: long enough to see a few scrapes' worth
/// of traffic and a slow leak of errors, short enough that a good release reaches
/// 100 % within the hour.
pub const ROLLOUT_MIN_STEP: Duration = Duration::from_secs(120);

/// A step still undecided after 30 minutes gets `on_inconclusive`: too little traffic
/// to decide within half an hour needs a person, not more waiting.
pub const ROLLOUT_MAX_STEP: Duration = Duration::from_secs(30 * 60);

/// 1 % of good releases rolled back by chance, per signal, over a whole rollout: a
/// false rollback costs a retry, a missed bad release costs users.
pub const ROLLOUT_ALPHA: f64 = 0.01;

/// The candidate may fail 20 % more often than the baseline ...
pub const ROLLOUT_ERRORS_REL_MARGIN: f64 = 0.2;

/// ... plus half a percentage point, so a baseline with no errors at all does not
/// demand a perfect candidate.
pub const ROLLOUT_ERRORS_ABS_MARGIN: f64 = 0.005;

/// A candidate proven to fail more than 5 % of requests is rolled back at once,
/// whatever the baseline does: no model release is expected to be that broken.
pub const ROLLOUT_ERRORS_HARD_MAX: f64 = 0.05;

/// "Slow" is slower than the baseline's p95: a tail users feel, with enough slow
/// requests (1 in 20) to judge quickly.
pub const ROLLOUT_LATENCY_TAIL: f64 = 0.95;

/// The candidate may have 20 % more slow requests than the baseline ...
pub const ROLLOUT_LATENCY_REL_MARGIN: f64 = 0.2;

/// ... plus one percentage point.
pub const ROLLOUT_LATENCY_ABS_MARGIN: f64 = 0.01;

/// At most 10 % of compared pairs may diverge above the noise floor.
pub const ROLLOUT_MAX_DIVERGENCE: f64 = 0.10;

/// At most 3 % of classification pairs may flip their label.
pub const ROLLOUT_MAX_LABEL_FLIP: f64 = 0.03;
