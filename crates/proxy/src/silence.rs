//! A clock for "nothing happened for this long", armed lazily: most streams never
//! go quiet, so most never make a timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How long a stream may stay quiet.
#[derive(Debug)]
pub(crate) struct Silence {
    limit: Duration,
    /// Running while the stream is quiet; made the first time it is.
    clock: Option<Pin<Box<Sleep>>>,
    quiet: bool,
}

impl Silence {
    pub(crate) fn new(limit: Duration) -> Silence {
        Silence {
            limit,
            clock: None,
            quiet: false,
        }
    }

    /// The stream made progress: the next quiet spell starts from zero.
    pub(crate) fn heard(&mut self) {
        self.quiet = false;
    }

    /// The stream is quiet now: ready once it has been quiet for the whole limit
    /// (the waker is registered to be woken then).
    pub(crate) fn poll_quiet(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let limit = self.limit;
        let clock = self
            .clock
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.quiet {
            self.quiet = true;
            clock.as_mut().reset(Instant::now() + limit);
        }
        clock.as_mut().poll(cx)
    }

    /// The limit, for messages.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }
}
