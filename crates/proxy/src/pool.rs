//! The compare pool: a few threads of their own, with a bounded queue, where shadow
//! pairs are judged. A comparison is CPU work whose cost the shadow backend's answer
//! decides; run on the async workers, one large answer would hold up every request
//! on that worker. Here it can only queue, and a full queue drops the pair (counted
//! by the caller), so live traffic never waits on a comparison.

use std::panic::AssertUnwindSafe;
use std::thread;

use crossbeam_channel::{bounded, Sender, TrySendError};

/// Threads judging pairs: half the cores (at least one), so comparisons can never take
/// more than half the machine from the async workers serving live traffic.
fn threads() -> usize {
    thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Pairs waiting to be judged, at most. Each waiting pair holds its shadow permit and
/// both answers, so `max_in_flight` bounds memory too; this only bounds how far
/// judging may fall behind before pairs are dropped rather than queued.
const QUEUE: usize = 64;

/// A pair's judgement, ready to run.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The handle jobs are submitted through; the threads end when every handle is gone.
#[derive(Debug, Clone)]
pub(crate) struct ComparePool {
    jobs: Sender<Job>,
}

impl ComparePool {
    /// Starts the pool's threads.
    pub(crate) fn start() -> ComparePool {
        let (jobs, queue) = bounded::<Job>(QUEUE);
        for i in 0..threads() {
            let queue = queue.clone();
            let spawned = thread::Builder::new()
                .name(format!("veer-compare-{i}"))
                .spawn(move || {
                    for job in queue {
                        // A panic in one judgement must not end the thread, or every
                        // later pair would queue up and be dropped.
                        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                            tracing::error!("a shadow comparison panicked; the pair is lost");
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a compare thread");
            }
        }
        ComparePool { jobs }
    }

    /// Queues `job`, or hands it back when the queue is full (or no thread runs).
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn jobs_run_off_the_caller_and_a_full_queue_hands_them_back() {
        let pool = ComparePool::start();
        let (done, finished) = mpsc::channel();
        let caller = thread::current().id();
        let job_done = done.clone();
        pool.submit(Box::new(move || {
            let _ = job_done.send(thread::current().id());
        }))
        .map_err(|_| "queued")
        .expect("an empty queue takes a job");
        let ran_on = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the job ran");
        assert_ne!(ran_on, caller);

        // Block every thread, then fill the queue: the next job comes back.
        let (release, blocked) = mpsc::channel::<()>();
        let blocked = std::sync::Arc::new(std::sync::Mutex::new(blocked));
        for _ in 0..threads() {
            let blocked = blocked.clone();
            let started = done.clone();
            pool.submit(Box::new(move || {
                let _ = started.send(thread::current().id());
                let _ = blocked.lock().map(|b| b.recv());
            }))
            .map_err(|_| "queued")
            .expect("queued");
        }
        for _ in 0..threads() {
            finished
                .recv_timeout(Duration::from_secs(10))
                .expect("a thread took a blocking job");
        }
        let accepted = (0..QUEUE + 1)
            .filter(|_| pool.submit(Box::new(|| {})).is_ok())
            .count();
        assert_eq!(accepted, QUEUE);
        drop(release);
    }

    #[test]
    fn a_panicking_job_does_not_end_its_thread() {
        let pool = ComparePool::start();
        for _ in 0..threads() {
            pool.submit(Box::new(|| panic!("boom")))
                .map_err(|_| "queued")
                .expect("queued");
        }
        let (done, finished) = mpsc::channel();
        pool.submit(Box::new(move || {
            let _ = done.send(());
        }))
        .map_err(|_| "queued")
        .expect("queued");
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the pool still runs jobs");
    }
}
