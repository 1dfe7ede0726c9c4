//! Test-only helpers for veer: real HTTP backends on `127.0.0.1:0`, a plain client,
//! and a launcher for the built `veer` binary. Nothing here is mocked: every byte
//! crosses a loopback socket.
//!
//! - [`backend`]: hyper servers that answer in a chosen way (fixed, echo, inspect,
//!   slow, failing, closing the connection, hanging).
//! - [`client`]: a pooled hyper client and one-call helpers for tests.
//! - [`process`]: runs `veer run` on a config, waits on its readiness line (never a
//!   sleep), sends it signals and reads its log.

pub mod backend;
pub mod client;
pub mod process;

pub use backend::{Behavior, Received, TestBackend};
pub use client::{Answer, TestClient};
pub use process::VeerProcess;
