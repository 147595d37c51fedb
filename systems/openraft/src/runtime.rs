//! openraft's `AsyncRuntime` (introduced in 0.9.0) on madsim.
//!
//! Everything openraft does with time, tasks and randomness goes through this trait in 0.9.x
//! (checked for 0.9.15, 0.9.24 and 0.9.25: `src/async_runtime.rs` is byte-identical across them);
//! the rest of openraft uses `tokio::sync`, `tokio::select!` and tokio's io traits, which need
//! no tokio runtime. So the stock crates.io openraft runs unmodified on madsim, with one
//! determinism hazard left over: see [`TokioRngPin`].

use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend};
use pin_project_lite::pin_project;

/// openraft on madsim: tasks, timers and the RNG are madsim's.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct MadsimRuntime;

/// A simulated instant. madsim's `Instant` is `std::time::Instant` (madsim intercepts the clock),
/// and openraft's `Instant` trait cannot be implemented for a foreign type here, so a newtype.
/// `now()` asks madsim's clock directly and falls back to the real clock outside a simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimInstant(pub std::time::Instant);

impl SimInstant {
    pub fn now() -> Self {
        match madsim::time::TimeHandle::try_current() {
            Some(h) => SimInstant(h.now_instant()),
            None => SimInstant(std::time::Instant::now()),
        }
    }
}

impl Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, d: Duration) -> SimInstant {
        SimInstant(self.0 + d)
    }
}
impl AddAssign<Duration> for SimInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}
impl Sub<Duration> for SimInstant {
    type Output = SimInstant;
    fn sub(self, d: Duration) -> SimInstant {
        SimInstant(self.0 - d)
    }
}
impl SubAssign<Duration> for SimInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}
impl Sub<SimInstant> for SimInstant {
    type Output = Duration;
    fn sub(self, other: SimInstant) -> Duration {
        self.0.saturating_duration_since(other.0)
    }
}

impl openraft::Instant for SimInstant {
    fn now() -> Self {
        SimInstant::now()
    }
}

/// `timeout`'s error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;
impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}
impl std::error::Error for Elapsed {}

pin_project! {
    /// A nameable, `Send` timeout future (madsim's `timeout()` returns an `impl Future` that is
    /// not `Send`). Like tokio's: the inner future is polled first, so a future that is ready
    /// at the deadline wins.
    #[must_use = "futures do nothing unless polled"]
    pub struct SimTimeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: madsim::time::Sleep,
    }
}

impl<F: Future> Future for SimTimeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Time out `future` after `duration` of simulated time.
pub fn timeout<F: Future>(duration: Duration, future: F) -> SimTimeout<F> {
    SimTimeout { future, sleep: madsim::time::sleep(duration) }
}

/// Time out `future` at `deadline`.
pub fn timeout_at<F: Future>(deadline: SimInstant, future: F) -> SimTimeout<F> {
    SimTimeout { future, sleep: madsim::time::sleep_until(deadline.0) }
}

/// openraft's RNG (election timeouts: `Config::new_rand_election_timeout`). rand 0.8's
/// `thread_rng` reseeds from the OS and is not deterministic under madsim; this draws from
/// madsim's per-runtime generator, so the same seed gives the same draws.
#[derive(Clone)]
pub struct SimRng(madsim::rand::GlobalRng);

impl fmt::Debug for SimRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimRng")
    }
}

impl rand::RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl AsyncRuntime for MadsimRuntime {
    type JoinError = madsim::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
    type Sleep = madsim::time::Sleep;
    type Instant = SimInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = SimTimeout<T>;
    type ThreadLocalRng = SimRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        madsim::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        madsim::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        madsim::time::sleep_until(deadline.0)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        // madsim never reports a panic through a JoinError (a panic ends block_on, or restarts
        // the node with restart_on_panic); kept for completeness.
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SimRng(madsim::rand::thread_rng())
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where T: OptionalSend {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

/// Pins tokio's thread-local `FastRand` for the length of a simulation.
///
/// Unbiased `tokio::select!` (openraft's replication loop picks between its backoff sleep and
/// its event channel with one) and `watch::Receiver::changed` draw from a per-thread generator
/// that tokio seeds lazily from `RandomState` hashed with a *process-global* counter. On a fresh
/// thread the `RandomState` keys are deterministic (madsim seeds them), the counter is not: it
/// counts every seed drawn in the process so far, so one seed can schedule differently
/// depending on how many runs came before it.
///
/// tokio replaces that generator while a runtime is entered, with one drawn from the runtime's
/// seed generator, which `Builder::rng_seed` fixes (`--cfg tokio_unstable`, set in this crate's
/// `.cargo/config.toml`). So `run` enters a seeded current-thread tokio runtime around the
/// madsim simulation. The simulation runs inside one poll of an `unconstrained` future: tokio's
/// cooperative budget (128 operations per poll) would otherwise run out inside the first poll
/// and every `tokio::sync` operation after it would return `Pending` forever. The tokio runtime
/// is never used to run tasks; `tokio::spawn` would silently queue onto it instead of panicking,
/// but nothing here calls it (openraft 0.9 spawns only through `AsyncRuntime`).
pub struct TokioRngPin;

impl TokioRngPin {
    /// Is pinning available in this build (`--cfg tokio_unstable`)?
    pub const AVAILABLE: bool = cfg!(tokio_unstable);

    /// Run `f` (which runs a madsim simulation) with tokio's thread-local RNG seeded from `seed`.
    ///
    /// Build the madsim `Runtime` *before* calling this: tokio's `Builder` creates a std
    /// `RandomState`, and madsim can seed std's per-thread hash keys only if it is the first to.
    #[cfg(tokio_unstable)]
    pub fn run<T>(seed: u64, f: impl FnOnce() -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
            .build()
            .expect("tokio current-thread runtime");
        let mut f = Some(f);
        rt.block_on(tokio::task::unconstrained(std::future::poll_fn(move |_cx| {
            Poll::Ready((f.take().expect("polled once"))())
        })))
    }

    /// Without `--cfg tokio_unstable` there is nothing to pin: run `f` as it is.
    #[cfg(not(tokio_unstable))]
    pub fn run<T>(_seed: u64, f: impl FnOnce() -> T) -> T {
        f()
    }
}
