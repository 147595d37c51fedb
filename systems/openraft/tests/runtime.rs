//! The madsim `AsyncRuntime`: timers, timeouts, spawn, RNG determinism.

use std::time::Duration;

use faultline_openraft::runtime::{MadsimRuntime, SimInstant, TokioRngPin};
use openraft::{AsyncRuntime, Instant as _};
use rand::Rng;

/// madsim's clock also moves a few dozen nanoseconds per task poll: compare to the microsecond.
fn assert_about(got: Duration, want: Duration) {
    assert!(got >= want && got < want + Duration::from_micros(1), "elapsed {got:?}, want {want:?}");
}

fn sim<F: std::future::Future + 'static>(seed: u64, f: F) -> F::Output {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(f)
}

#[test]
fn sleep_and_sleep_until_advance_simulated_time() {
    sim(1, async {
        let t0 = SimInstant::now();
        MadsimRuntime::sleep(Duration::from_millis(150)).await;
        let t1 = <SimInstant as openraft::Instant>::now();
        assert_about(t1 - t0, Duration::from_millis(150));
        MadsimRuntime::sleep_until(t1 + Duration::from_millis(50)).await;
        assert_about(t1.elapsed(), Duration::from_millis(50));
        // Instant arithmetic openraft relies on.
        let mut t = t0;
        t += Duration::from_millis(10);
        t -= Duration::from_millis(4);
        assert_eq!(t - t0, Duration::from_millis(6));
        assert_eq!(t0 - t, Duration::ZERO, "saturates like tokio's Instant");
        assert_eq!((t0 + Duration::from_secs(1)) - Duration::from_secs(1), t0);
    });
}

#[test]
fn timeout_fires_at_the_deadline_and_passes_a_ready_future() {
    sim(2, async {
        let t0 = SimInstant::now();
        let r = MadsimRuntime::timeout(Duration::from_millis(100), MadsimRuntime::sleep(Duration::from_secs(5))).await;
        assert!(r.is_err());
        assert_about(t0.elapsed(), Duration::from_millis(100));

        let r = MadsimRuntime::timeout(Duration::from_millis(100), async { 7 }).await;
        assert_eq!(r.unwrap(), 7);

        let t1 = SimInstant::now();
        let r = MadsimRuntime::timeout_at(t1 + Duration::from_millis(30), async {
            MadsimRuntime::sleep(Duration::from_millis(10)).await;
            "done"
        })
        .await;
        assert_eq!(r.unwrap(), "done");
        assert_about(t1.elapsed(), Duration::from_millis(10));

        // Nameable and Send: openraft stores it in a struct and moves it across tasks.
        fn assert_send<T: Send>(_: &T) {}
        let fut = MadsimRuntime::timeout(Duration::from_millis(1), async {});
        assert_send(&fut);
        let _: <MadsimRuntime as AsyncRuntime>::Timeout<(), _> = fut;
    });
}

#[test]
fn spawn_joins_and_oneshot_delivers() {
    sim(3, async {
        let h = MadsimRuntime::spawn(async {
            MadsimRuntime::sleep(Duration::from_millis(20)).await;
            40 + 2
        });
        assert_eq!(h.await.unwrap(), 42);

        let (tx, rx) = MadsimRuntime::oneshot::<u32>();
        MadsimRuntime::spawn(async move {
            MadsimRuntime::sleep(Duration::from_millis(5)).await;
            use openraft::async_runtime::AsyncOneshotSendExt;
            tx.send(9).unwrap();
        });
        assert_eq!(rx.await.unwrap(), 9);

        // An aborted task's handle reports an error that is not a panic.
        let h = MadsimRuntime::spawn(async {
            MadsimRuntime::sleep(Duration::from_secs(10)).await;
        });
        h.abort();
        let e = h.await.unwrap_err();
        assert!(!MadsimRuntime::is_panic(&e));
    });
}

fn draws(seed: u64) -> Vec<u64> {
    sim(seed, async {
        let mut out = Vec::new();
        for _ in 0..8 {
            out.push(MadsimRuntime::thread_rng().gen_range(150..300));
            MadsimRuntime::sleep(Duration::from_millis(1)).await;
        }
        // openraft's own draw: the election timeout.
        let cfg = openraft::Config { election_timeout_min: 150, election_timeout_max: 300, ..Default::default() };
        out.push(cfg.new_rand_election_timeout::<MadsimRuntime>());
        out
    })
}

#[test]
fn rng_same_seed_same_draws() {
    let a = draws(42);
    let b = draws(42);
    assert_eq!(a, b);
    let c = draws(43);
    assert_ne!(a, c, "a different seed draws differently");
    // And on a fresh thread, after other runs: still the same.
    let d = std::thread::spawn(|| draws(42)).join().unwrap();
    assert_eq!(a, d);
}

/// Which branch an unbiased `tokio::select!` takes when both are ready, 64 times, in a fresh
/// thread's simulation (as a harness runs each seed).
fn select_choices(seed: u64, pin: bool) -> Vec<u8> {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let f = async {
            let mut v = Vec::new();
            for _ in 0..64 {
                let c = tokio::select! {
                    _ = std::future::ready(()) => 0u8,
                    _ = std::future::ready(()) => 1u8,
                };
                v.push(c);
            }
            v
        };
        if pin {
            TokioRngPin::run(seed, || rt.block_on(f))
        } else {
            rt.block_on(f)
        }
    })
    .join()
    .unwrap()
}

/// The hazard openraft inherits (its replication loop uses an unbiased select!): without the
/// pin, tokio seeds its per-thread RNG from a process-global counter, so the same seed on a fresh
/// thread picks differently (equal by chance with probability 2^-64). With the pin, it repeats.
#[test]
fn tokio_select_rng_is_pinned_by_seed() {
    assert!(TokioRngPin::AVAILABLE, "built without --cfg tokio_unstable");
    let a = select_choices(9, true);
    let b = select_choices(9, true);
    assert_eq!(a, b, "pinned: same seed, same select! choices");
    assert_ne!(a, select_choices(10, true), "pinned: another seed, other choices");
    let u1 = select_choices(9, false);
    let u2 = select_choices(9, false);
    assert_ne!(u1, u2, "unpinned: tokio's RNG is not a function of the seed (the hazard is real)");
}
