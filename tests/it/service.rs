//! The service: the daemon's loop driven through injected ticks, reloads and shutdown on a
//! paused clock (one cycle at a time, busy lock, backoff, push between cycles, webhook wake,
//! reload, grace, errors that do not end it), the daemon binary under real signals and its
//! cron job, monitoring, cost, purge, no secrets anywhere, and the systemd units.

use std::sync::Arc;
use std::time::Duration;

use huoltosync::config::Config;
use huoltosync::service::daemon::{self, Deps, Happened, Skip, Work};
use huoltosync::service::runtime::Runtime;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::helpers::{Setup, TestEnv, wait_for};

const EVERY_SECOND: &str = "[schedule]\npoll = \"* * * * * *\"\n";
const NEVER: &str = "[schedule]\npoll = \"0 0 0 1 1 *\"\n";

/// The daemon's loop in this process: ticks, reloads and wake-ups are sent by the test, what
/// the daemon did comes back as [`Happened`].
struct Loop {
    ticks: mpsc::UnboundedSender<()>,
    reload: mpsc::UnboundedSender<()>,
    wake: Arc<Notify>,
    slotti_ticks: mpsc::UnboundedSender<()>,
    /// The runtime's config in force.
    config: watch::Receiver<Arc<Config>>,
    /// The runtime's stop token.
    stopping: tokio_util::sync::CancellationToken,
    happened: mpsc::UnboundedReceiver<Happened>,
    seen: Vec<Happened>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Loop {
    async fn start(env: &TestEnv) -> Loop {
        Loop::start_with(env, |_| None).await
    }

    /// With the listeners' task `listener` makes, given the runtime.
    async fn start_with(
        env: &TestEnv,
        listener: impl FnOnce(&Runtime) -> Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    ) -> Loop {
        let config = env.config.clone();
        let (ticks, tick_rx) = mpsc::unbounded_channel();
        let (slotti_ticks, slotti_rx) = mpsc::unbounded_channel();
        let (reload, reload_rx) = mpsc::unbounded_channel();
        let (happened_tx, happened) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let wake = Arc::new(Notify::new());
        let runtime = Runtime::new(
            config.clone(),
            huoltosync::tampuuri::Api::new(&config).unwrap(),
            huoltosync::store::Handle::open(config.store.path.clone())
                .await
                .unwrap(),
        );
        let (config, stopping) = (runtime.watch(), runtime.stop_token().clone());
        let listener = listener(&runtime);
        let deps = Deps {
            config_path: env.config_path(),
            runtime,
            ticks: tick_rx,
            slotti_ticks: slotti_rx,
            reload: reload_rx,
            wake: wake.clone(),
            listener,
            watchdog: None,
            now: huoltosync::domain::time::now,
            happened: Some(happened_tx),
        };
        let task = tokio::spawn(daemon::run(deps, async {
            let _ = stop_rx.await;
        }));
        Loop {
            ticks,
            slotti_ticks,
            reload,
            wake,
            config,
            stopping,
            happened,
            seen: Vec::new(),
            stop: Some(stop),
            task,
        }
    }

    fn tick(&self) {
        self.ticks.send(()).unwrap();
    }

    /// A `[slotti] reconcile` tick.
    fn slotti_tick(&self) {
        self.slotti_ticks.send(()).unwrap();
    }

    /// The next thing that happened and matches `want` (others are kept in `seen`). Bounded by
    /// an hour of the paused clock, which runs ahead whenever the runtime idles.
    async fn until(&mut self, want: impl Fn(&Happened) -> bool) -> Happened {
        let (rx, seen) = (&mut self.happened, &mut self.seen);
        let found = tokio::time::timeout(Duration::from_secs(3600), async {
            while let Some(h) = rx.recv().await {
                seen.push(h.clone());
                if want(&h) {
                    return Some(h);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(h)) => h,
            _ => panic!("it never happened; the daemon did: {:?}", self.seen),
        }
    }

    /// The next decision about a poll: started or skipped.
    async fn poll_decision(&mut self) -> Happened {
        self.until(|h| {
            matches!(
                h,
                Happened::WorkStarted(Work::Poll, _) | Happened::WorkSkipped(Work::Poll, _)
            )
        })
        .await
    }

    async fn finished(&mut self, work: Work) -> bool {
        match self
            .until(|h| matches!(h, Happened::WorkFinished(w, _) if *w == work))
            .await
        {
            Happened::WorkFinished(_, ok) => ok,
            _ => unreachable!(),
        }
    }

    /// Shuts the loop down; what `run` returned and everything that happened.
    async fn stop(mut self) -> (anyhow::Result<()>, Vec<Happened>) {
        let _ = self.stop.take().expect("stopped once").send(());
        let ended = self.task.await.expect("the loop does not panic");
        while let Ok(h) = self.happened.try_recv() {
            self.seen.push(h);
        }
        (ended, self.seen)
    }
}

fn polled(accounts: &[&str]) -> Happened {
    Happened::WorkStarted(
        Work::Poll,
        accounts.iter().map(|a| (*a).to_owned()).collect(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_daemon_polls_at_start_up_only_when_the_mirror_is_stale() {
    let env = Setup::tickets(3).sections(NEVER).start().await;
    let mut d = Loop::start(&env).await;
    assert_eq!(
        d.until(|h| matches!(h, Happened::Started { .. })).await,
        Happened::Started { poll_now: true }
    );
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    assert!(d.finished(Work::Poll).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
    // Synced within the interval (a year): no poll at start-up.
    let d = Loop::start(&env).await;
    let (ended, seen) = d.stop().await;
    ended.unwrap();
    assert_eq!(seen[0], Happened::Started { poll_now: false });
    assert!(
        !seen.iter().any(|h| matches!(h, Happened::WorkStarted(..))),
        "{seen:?}"
    );
    assert_eq!(env.runs("sim-1").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_tick_during_a_slow_cycle_is_skipped_never_overlapped() {
    let env = Setup::tickets(5).sections(NEVER).start().await;
    env.faults(json!({"latency_ms": 3000}));
    let mut d = Loop::start(&env).await;
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]), "start-up poll");
    d.tick();
    assert_eq!(
        d.poll_decision().await,
        Happened::WorkSkipped(Work::Poll, Skip::Running)
    );
    assert!(d.finished(Work::Poll).await);
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    assert!(d.finished(Work::Poll).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
    assert_eq!(env.selaa_calls(), 2, "two cycles, one page each");
    let runs = env.runs("sim-1");
    assert_eq!(runs.len(), 2);
    assert!(
        runs[1].0.as_str() >= runs[0].1.as_deref().expect("finished"),
        "{runs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tick_is_skipped_while_the_lock_is_taken_or_its_file_cannot_be_opened() {
    let env = Setup::tickets(2).sections(NEVER).start().await;
    env.sync_ok().await;
    let mut d = Loop::start(&env).await;
    let held = huoltosync::service::lock::StoreLock::try_acquire(&env.config.store.path)
        .unwrap()
        .unwrap();
    d.tick();
    assert_eq!(
        d.poll_decision().await,
        Happened::WorkSkipped(Work::Poll, Skip::Busy)
    );
    let lock_file = held.path().to_owned();
    drop(held);
    // A lock file that cannot be opened (here a folder in its place; in life, no file
    // descriptors left): skipped, and the loop goes on.
    std::fs::remove_file(&lock_file).unwrap();
    std::fs::create_dir(&lock_file).unwrap();
    d.tick();
    assert_eq!(
        d.poll_decision().await,
        Happened::WorkSkipped(Work::Poll, Skip::LockFile)
    );
    std::fs::remove_dir(&lock_file).unwrap();
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    assert!(d.finished(Work::Poll).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
    assert_eq!(env.selaa_calls(), 2, "the library sync and one daemon poll");
}

#[tokio::test(start_paused = true)]
async fn a_failing_account_backs_off_doubling_and_is_polled_every_tick_once_it_recovers() {
    let env = Setup::tickets(3)
        .accounts(2)
        .sections(&format!(
            "{NEVER}backoff_initial_secs = 2\nbackoff_max_secs = 4\n"
        ))
        .start()
        .await;
    env.faults(json!({"error_rate": 1.0, "only_account": "sim-2"}));
    let mut d = Loop::start(&env).await;
    let backoff = |failures, secs| Happened::AccountBackoff {
        account: "sim-2".into(),
        failures,
        delay: Duration::from_secs(secs),
    };
    let is_backoff = |h: &Happened| matches!(h, Happened::AccountBackoff { .. });
    assert_eq!(d.poll_decision().await, polled(&["sim-1", "sim-2"]));
    assert_eq!(d.until(is_backoff).await, backoff(1, 2));
    assert!(
        d.finished(Work::Poll).await,
        "an account's failure is not the cycle's"
    );
    for (wait, failures, delay) in [(2, 2, 4), (4, 3, 4)] {
        d.tick();
        assert_eq!(d.poll_decision().await, polled(&["sim-1"]), "sim-2 waits");
        assert!(d.finished(Work::Poll).await);
        tokio::time::advance(Duration::from_secs(wait)).await;
        d.tick();
        assert_eq!(d.poll_decision().await, polled(&["sim-1", "sim-2"]));
        assert_eq!(d.until(is_backoff).await, backoff(failures, delay));
        assert!(d.finished(Work::Poll).await);
    }
    env.sim().clear_faults();
    tokio::time::advance(Duration::from_secs(4)).await;
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1", "sim-2"]));
    assert_eq!(
        d.until(|h| matches!(h, Happened::AccountRecovered(_)))
            .await,
        Happened::AccountRecovered("sim-2".into())
    );
    assert!(d.finished(Work::Poll).await);
    // Reset: the next tick polls it again at once.
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1", "sim-2"]));
    assert!(d.finished(Work::Poll).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
    let ok = |a: &str| env.runs(a).iter().filter(|r| r.2 == "ok").count();
    assert_eq!(
        (ok("sim-1"), env.runs("sim-2").len(), ok("sim-2")),
        (7, 5, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn queued_actions_are_pushed_between_cycles() {
    let env = Setup::tickets(3)
        .sections(&format!("{NEVER}[service]\npush_check_ms = 200\n"))
        .start()
        .await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &id.to_string()]).await;
    let mut d = Loop::start(&env).await;
    assert_eq!(
        d.until(|h| matches!(h, Happened::WorkStarted(..))).await,
        Happened::WorkStarted(Work::Push, Vec::new())
    );
    assert!(d.finished(Work::Push).await);
    let (ended, seen) = d.stop().await;
    ended.unwrap();
    assert_eq!(env.applied(), [(id, "vastaanota".to_owned())]);
    assert_eq!(env.outbox()[0].1, "delivered");
    assert_eq!(env.selaa_calls(), 1, "no poll: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_webhook_wake_processes_the_pending_events() {
    let env = Setup::tickets(3)
        .sections(&format!(
            "{NEVER}[webhook]\nlisten = \"127.0.0.1:0\"\nhmac_secret = \"s\"\nreconcile = \"0 0 0 1 1 *\"\ndebounce_ms = 0\ndebounce_max_ms = 0\n"
        ))
        .start()
        .await;
    env.sync_ok().await;
    let mut d = Loop::start(&env).await;
    // At start-up, events left by an earlier run are looked for (none here).
    assert!(d.finished(Work::Webhook).await);
    assert_eq!(env.get_calls(), 0);
    let id = env.open_ids("sim-1")[0];
    env.patch("sim-1", id, json!({"Otsikko": "Vuotaa yhä"}));
    let event = huoltosync::store::NewEvent {
        key: 1,
        account: Some("sim-1".into()),
        action: Some("IlmoitusMuokattu".into()),
        reference_id: Some(id),
        reference_json: None,
        event_time: None,
    };
    huoltosync::store::Store::open(&env.config.store.path)
        .unwrap()
        .webhook()
        .record_delivery(
            &huoltosync::domain::time::fmt(huoltosync::domain::time::now()),
            &[event],
        )
        .unwrap();
    d.wake.notify_one();
    assert_eq!(
        d.until(|h| matches!(h, Happened::WorkStarted(..))).await,
        Happened::WorkStarted(Work::Webhook, Vec::new())
    );
    assert!(d.finished(Work::Webhook).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
    assert_eq!((env.get_calls(), env.selaa_calls()), (1, 1));
    let title: String = env
        .db()
        .query_row("SELECT title FROM tickets WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(title, "Vuotaa yhä");
}

#[tokio::test(start_paused = true)]
async fn a_slotti_reconcile_tick_reconciles_in_the_work_slot_and_a_tick_while_busy_is_skipped() {
    let env = crate::slotti_sync::env(14).await;
    env.sync_ok().await;
    let gone = crate::slotti_sync::book_ours(&env, 0, 1).await;
    let kept = crate::slotti_sync::book_ours(&env, 1, 2).await;
    // Deleted by hand in Slotti, no webhook registered: only the reconciliation can see it.
    assert!(env.sim().slotti_delete(&gone));
    // A slow Slotti keeps the reconciliation in the slot while the second tick comes.
    env.faults(json!({"slotti_latency_ms": 3000}));
    // A Slotti delivery left recorded by an earlier run: the start-up webhook pass processes it.
    huoltosync::store::Store::open(&env.config.store.path)
        .unwrap()
        .visits()
        .record_slotti_delivery_counted(
            "left-over",
            "booking.deleted",
            "\"no-such-booking\"",
            0,
            huoltosync::domain::time::now(),
        )
        .unwrap();
    let mut d = Loop::start(&env).await;
    assert!(d.finished(Work::Webhook).await, "the start-up webhook pass");
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_deliveries WHERE processed_at IS NOT NULL AND outcome = 'unknown'"),
        1
    );
    d.slotti_tick();
    assert_eq!(
        d.until(|h| matches!(h, Happened::WorkStarted(..))).await,
        Happened::WorkStarted(Work::Reconcile, Vec::new())
    );
    d.slotti_tick();
    assert_eq!(
        d.until(|h| matches!(h, Happened::WorkSkipped(..))).await,
        Happened::WorkSkipped(Work::Reconcile, Skip::Running)
    );
    assert!(d.finished(Work::Reconcile).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
    let status = |g: &str| -> String {
        env.db()
            .query_row(
                "SELECT status FROM visits WHERE booking_guid = ?1",
                [g],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        (status(&gone).as_str(), status(&kept).as_str()),
        ("cancelled", "booked")
    );
    assert_eq!(
        env.count("SELECT count(*) FROM slotti_reconciles WHERE ok = 1"),
        1,
        "one reconciliation: the second tick was skipped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_takes_a_valid_config_and_keeps_the_running_one_when_the_new_one_is_invalid() {
    let env = Setup::tickets(2).sections(NEVER).start().await;
    env.sync_ok().await;
    let mut d = Loop::start(&env).await;
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        good.replace(NEVER, EVERY_SECOND)
            .replace("contractor_id = 4711", "contractor_id = \"x\""),
    )
    .unwrap();
    d.reload.send(()).unwrap();
    assert_eq!(
        d.until(|h| matches!(h, Happened::Reloaded | Happened::ReloadRefused))
            .await,
        Happened::ReloadRefused
    );
    assert!(
        !d.config.has_changed().unwrap(),
        "the runtime keeps the running config"
    );
    // Still working on the old config.
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    assert!(d.finished(Work::Poll).await);
    std::fs::write(env.config_path(), good.replace(NEVER, EVERY_SECOND)).unwrap();
    d.reload.send(()).unwrap();
    assert_eq!(
        d.until(|h| matches!(h, Happened::Reloaded | Happened::ReloadRefused))
            .await,
        Happened::Reloaded
    );
    assert_eq!(
        daemon::poll_schedule(&d.config.borrow_and_update()).expr(),
        "* * * * * *",
        "the runtime hands the new config (and its schedule) to every part"
    );
    let (ended, _) = d.stop().await;
    ended.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_work_finish_within_the_grace_period() {
    let env = Setup::tickets(3)
        .sections(&format!("{NEVER}[service]\nshutdown_grace_secs = 10\n"))
        .start()
        .await;
    env.faults(json!({"latency_ms": 3000}));
    let mut d = Loop::start(&env).await;
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    let (ended, seen) = d.stop().await;
    ended.unwrap();
    assert_eq!(seen.last(), Some(&Happened::WorkFinished(Work::Poll, true)));
    assert_eq!(env.runs("sim-1")[0].2, "ok");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_work_that_outlasts_the_grace_period() {
    let env = Setup::tickets(3)
        .sections(&format!("{NEVER}[service]\nshutdown_grace_secs = 1\n"))
        .start()
        .await;
    env.faults(json!({"latency_ms": 30000}));
    let mut d = Loop::start(&env).await;
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    let (ended, seen) = d.stop().await;
    ended.unwrap();
    assert_eq!(seen.last(), Some(&Happened::WorkAbandoned(Work::Poll)));
    assert!(
        env.runs("sim-1").iter().all(|r| r.2 != "ok"),
        "{:?}",
        env.runs("sim-1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_cancels_the_runtime_and_waits_for_the_listeners_to_drain() {
    let env = Setup::tickets(1)
        .sections(&format!("{NEVER}[service]\nshutdown_grace_secs = 10\n"))
        .start()
        .await;
    env.sync_ok().await;
    let (drained_tx, mut drained) = oneshot::channel::<()>();
    let d = Loop::start_with(&env, |rt| {
        let stop = rt.stop_token().clone();
        Some(tokio::spawn(async move {
            stop.cancelled().await;
            // A request in flight that takes 3 s to answer.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = drained_tx.send(());
            Ok(())
        }))
    })
    .await;
    let stopping = d.stopping.clone();
    assert!(!stopping.is_cancelled());
    let t0 = tokio::time::Instant::now();
    let (ended, _) = d.stop().await;
    ended.unwrap();
    assert!(stopping.is_cancelled(), "the stop cancels the runtime");
    assert!(
        drained.try_recv().is_ok(),
        "the loop ends after the listeners drained"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn listeners_that_do_not_drain_within_the_grace_period_are_stopped() {
    let env = Setup::tickets(1)
        .sections(&format!("{NEVER}[service]\nshutdown_grace_secs = 2\n"))
        .start()
        .await;
    env.sync_ok().await;
    /// Tells when the task holding it is dropped (stopped).
    struct Dropped(Option<oneshot::Sender<()>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.take().map(|tx| tx.send(()));
        }
    }
    let (dropped_tx, mut dropped) = oneshot::channel::<()>();
    let d = Loop::start_with(&env, |_| {
        let guard = Dropped(Some(dropped_tx));
        Some(tokio::spawn(async move {
            let _guard = guard;
            // A request that never ends.
            std::future::pending::<()>().await;
            Ok(())
        }))
    })
    .await;
    let t0 = tokio::time::Instant::now();
    let (ended, _) = d.stop().await;
    ended.unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "the grace period, not more: {took:?}"
    );
    tokio::task::yield_now().await;
    assert!(dropped.try_recv().is_ok(), "the listeners were stopped");
}

#[tokio::test(start_paused = true)]
async fn an_error_in_a_piece_of_work_is_backed_off_and_the_loop_goes_on() {
    let env = Setup::tickets(2).sections(NEVER).start().await;
    env.sync_ok().await;
    let mut d = Loop::start(&env).await;
    env.db()
        .execute_batch("ALTER TABLE outbox RENAME TO outbox_away")
        .unwrap();
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    assert!(!d.finished(Work::Poll).await, "the cycle's push fails");
    d.tick();
    assert_eq!(
        d.poll_decision().await,
        Happened::WorkSkipped(Work::Poll, Skip::BackingOff)
    );
    env.db()
        .execute_batch("ALTER TABLE outbox_away RENAME TO outbox")
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    d.tick();
    assert_eq!(d.poll_decision().await, polled(&["sim-1"]));
    assert!(d.finished(Work::Poll).await);
    let (ended, _) = d.stop().await;
    ended.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_webhook_listener_ends_the_daemon_with_its_reason() {
    let env = Setup::tickets(1).sections(NEVER).start().await;
    env.sync_ok().await;
    let listener = tokio::spawn(async { Err(anyhow::anyhow!("accept: EINVAL")) });
    let d = Loop::start_with(&env, |_| Some(listener)).await;
    let ended = tokio::time::timeout(Duration::from_secs(3600), d.task)
        .await
        .expect("the loop ends")
        .unwrap();
    assert_eq!(
        format!("{:#}", ended.unwrap_err()),
        "the webhook listener failed: accept: EINVAL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_during_a_cycle_exits_75_naming_the_holder_and_between_cycles_runs() {
    let env = Setup::tickets(5).sections(EVERY_SECOND).start().await;
    env.faults(json!({"latency_ms": 3000}));
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(5), || env.sim().total_calls() >= 1).await,
        "a cycle started"
    );
    let before = env.sim().total_calls();
    let (code, _, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 75, "{err}");
    assert!(err.contains(&format!("pid {}", daemon.pid())), "{err}");
    assert_eq!(
        env.sim().total_calls(),
        before,
        "the refused one-shot made no call"
    );
    // With --wait it waits for the daemon's cycle to end, then runs.
    let (code, out, err) = env.cli(&["run", "--once", "--wait", "30"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0);

    // A daemon between cycles does not hold the lock: a one-shot simply runs.
    env.sim().clear_faults();
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(EVERY_SECOND, NEVER);
    std::fs::write(env.config_path(), text).unwrap();
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .log()
            .contains("Daemon started."))
        .await
    );
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{out}{err}");
    daemon.stop(Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_by_a_killed_process_never_blocks() {
    let env = Setup::tickets(5).start().await;
    env.faults(json!({"latency_ms": 3000}));
    let mut child = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(5), || env.sim().total_calls() >= 1).await);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    env.sim().clear_faults();
    let (code, out, err) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_push_exits_0_and_the_action_is_never_lost_or_doubled() {
    let env = Setup::tickets(3)
        .sections(&format!(
            "{NEVER}[service]\npush_check_ms = 200\nshutdown_grace_secs = 10\n"
        ))
        .start()
        .await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    env.task_ok(&["accept", &id.to_string()]).await;
    env.faults(json!({"latency_after_apply_ms": 1500}));
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(5), || env.sim().log().len() == 1).await,
        "the push reached Tampuuri"
    );
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
    let status: String = env
        .db()
        .query_row("SELECT status FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        status, "delivered",
        "the in-flight push finished within the grace period"
    );
    // Another run changes nothing: applied exactly once.
    env.sim().clear_faults();
    let (code, _, _) = env.cli(&["run", "--once"]).await;
    assert_eq!(code, 0);
    assert_eq!(env.sim().log().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_valid_config_and_keeps_the_old_one_on_a_broken_one() {
    let env = Setup::tickets(3).sections(NEVER).start().await;
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(5), || env.runs("sim-1").len() == 1).await,
        "the start-up poll"
    );
    let good = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(NEVER, EVERY_SECOND);
    std::fs::write(env.config_path(), &good).unwrap();
    daemon.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(6), || env.runs("sim-1").len() >= 3).await,
        "the new schedule is in force"
    );
    std::fs::write(
        env.config_path(),
        good.replace("contractor_id = 4711", "contractor_id = \"x\""),
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(6), || daemon
            .log()
            .contains("Config reload failed; keeping the running config."))
        .await
    );
    let n = env.runs("sim-1").len();
    assert!(
        wait_for(Duration::from_secs(6), || env.runs("sim-1").len() >= n + 2).await,
        "still polling on the old config"
    );
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
    assert!(log.contains("Config reloaded."), "{log}");
    assert!(
        log.lines().any(
            |l| l.contains("Config reload failed; keeping the running config.")
                && l.contains("accounts[0].contractor_id")
        ),
        "the reload error is one event naming the key: {log}"
    );
}

/// A schedule that fires every second during the current hour and the next in `zone`, and at
/// no time in the coming hours in UTC (Kathmandu is UTC+05:45 all year).
fn every_second_this_hour_in_kathmandu() -> String {
    use chrono::Timelike;
    let h = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kathmandu)
        .hour();
    format!("* * {h},{} * * *", (h + 1) % 24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_job_fires_on_the_wall_clock_of_schedule_timezone_and_follows_a_reload() {
    let poll = every_second_this_hour_in_kathmandu();
    let utc = format!("[schedule]\npoll = \"{poll}\"\ntimezone = \"UTC\"\n");
    let env = Setup::tickets(3).sections(&utc).start().await;
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(5), || env.runs("sim-1").len() == 1).await,
        "the start-up poll"
    );
    let next_poll = daemon
        .log()
        .lines()
        .find(|l| l.contains("Daemon started."))
        .and_then(|l| l.split("next_poll=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| huoltosync::domain::time::parse(v.trim_matches('"')))
        .unwrap_or_else(|| panic!("the start-up line names the next poll: {}", daemon.log()));
    assert!(
        next_poll - chrono::Utc::now() > chrono::Duration::minutes(30),
        "in UTC, {poll:?} is hours away, not at {next_poll}"
    );
    let kathmandu = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("timezone = \"UTC\"", "timezone = \"Asia/Kathmandu\"");
    std::fs::write(env.config_path(), &kathmandu).unwrap();
    daemon.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(8), || env.runs("sim-1").len() >= 3).await,
        "in Asia/Kathmandu, {poll:?} fires now"
    );
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.lines().any(|l| l.contains("Poll job set.")
            && l.contains("Asia/Kathmandu")
            && l.contains("+05:45")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_polls_at_start_up_when_the_mirror_is_stale_and_says_when_it_polls_next() {
    let env = Setup::tickets(3).sections(NEVER).start().await;
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(10), || env
            .runs("sim-1")
            .iter()
            .any(|r| r.2 == "ok"))
        .await,
        "polled at start-up, not at the next scheduled tick (a year away)"
    );
    let (code, out, _) = env.cli(&["status"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "{log}");
    let started = log
        .lines()
        .find(|l| l.contains("Daemon started."))
        .unwrap_or_default();
    assert!(
        started.contains("poll_now=true") && started.contains("next_poll="),
        "{log}"
    );
    assert!(
        !log.contains("tokio_cron_scheduler") && !log.contains("Uninited"),
        "no library noise: {log}"
    );
    // A mirror synced within the interval is not polled again at start-up.
    let daemon = env.daemon(&[]).await;
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .log()
            .contains("Daemon started."))
        .await
    );
    let (_, log) = daemon.stop(Duration::from_secs(15)).await;
    assert_eq!(env.runs("sim-1").len(), 1, "{log}");
    assert!(log.contains("poll_now=false"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_format_error_or_output() {
    let env = Setup::tickets(4)
        .sections(&format!(
            "{EVERY_SECOND}[metrics]\nlisten = \"127.0.0.1:0\"\n"
        ))
        .start()
        .await;
    let mut all = String::new();
    for format in ["text", "json"] {
        let level = ["--log-format", format, "--log-level", "trace"];
        for cmd in [
            &["run", "--once"][..],
            &["status"],
            &["status", "--json"],
            &["tasks", "--all"],
            &["check-config", "--online"],
            &["outbox"],
            &["cost"],
            &["purge", "--dry-run"],
        ] {
            let args: Vec<&str> = level.iter().chain(cmd).copied().collect();
            let (_, out, err) = env.cli(&args).await;
            all.push_str(&out);
            all.push_str(&err);
        }
        let before = env.runs("sim-1").len();
        let daemon = env.daemon(&level).await;
        assert!(
            wait_for(Duration::from_secs(10), || env.runs("sim-1").len() > before).await,
            "the daemon polled"
        );
        let (_, log) = daemon.stop(Duration::from_secs(15)).await;
        all.push_str(&log);
    }
    // Errors too: a wrong password and a wrong key.
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        text.replace("sim-password", "väärä-salainen-1")
            .replace("\"sim-key\"", "\"väärä-avain-2\""),
    )
    .unwrap();
    for cmd in [
        &["--log-level", "trace", "run", "--once"][..],
        &["check-config", "--online"],
        &["status"],
    ] {
        let (_, out, err) = env.cli(cmd).await;
        all.push_str(&out);
        all.push_str(&err);
    }
    assert!(
        all.contains("Sync finished.") && all.contains("credentials"),
        "the logs were captured"
    );
    for secret in [
        "sim-password",
        "sim-key",
        "väärä-salainen-1",
        "väärä-avain-2",
    ] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
}

#[tokio::test]
async fn status_fails_on_a_stale_account_and_on_dead_letters() {
    let env = Setup::tickets(2)
        .sections("[service]\nstale_after_secs = 2\n")
        .start()
        .await;
    // Before anything created the store, status says so (and creates none).
    let (code, _, err) = env.cli(&["status"]).await;
    assert_eq!(code, 1, "no store is a problem: {err}");
    assert!(err.contains("no store at"), "{err}");
    // The store exists (the daemon opened it) but no poll succeeded yet.
    drop(huoltosync::store::Store::open(&env.config.store.path).unwrap());
    let (code, out, _) = env.cli(&["status"]).await;
    assert_eq!(code, 1, "never synced is a problem: {out}");
    assert!(out.contains("never synced successfully"), "{out}");
    env.sync_ok().await;
    assert_eq!(env.cli(&["status"]).await.0, 0);
    // The last success, three seconds older.
    env.db()
        .execute_batch(
            "UPDATE sync_runs SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', started_at, '-3 seconds'),
                                  finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, '-3 seconds')",
        )
        .unwrap();
    let (code, out, _) = env.cli(&["status", "--json"]).await;
    assert_eq!(code, 1);
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        v[0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("over the 2 s threshold"),
        "{out}"
    );
    env.sync_ok().await;
    env.task_ok(&["accept", &env.open_ids("sim-1")[0].to_string()])
        .await;
    env.faults(json!({"reject_next": 1}));
    env.push().await;
    let (code, out, _) = env.cli(&["status"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("1 dead-lettered action(s)"), "{out}");
}

#[tokio::test]
async fn cost_counts_scheduled_polls_over_the_month_as_helsinki_has_it() {
    let env = Setup::tickets(1)
        .sections("[schedule]\npoll = \"0 */15 * * * *\"\n")
        .start()
        .await;
    {
        let _ = huoltosync::store::Store::open(&env.config.store.path).unwrap();
    }
    // March 2026 is an hour short in Helsinki (clocks go forward), October an hour long, with
    // the repeated hour polled twice.
    for (month, polls) in [
        ("2026-03", 96 * 31 - 4),
        ("2026-09", 96 * 30),
        ("2026-10", 96 * 31 + 4),
    ] {
        let (code, out, err) = env.cli(&["cost", "--month", month, "--json"]).await;
        assert_eq!(code, 0, "{err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            r["accounts"][0]["schedule_calls_per_month"].as_u64(),
            Some(polls),
            "{month}: {out}"
        );
    }
}

#[tokio::test]
async fn cost_gives_exact_figures_per_account_customer_and_package() {
    let env = Setup::tickets(1).accounts(3).account_toml("").start().await;
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let text = text
        .replacen(
            "name = \"sim-1\"",
            "name = \"sim-1\"\ncustomer = \"Isännöinti Oy\"",
            1,
        )
        .replacen(
            "name = \"sim-2\"",
            "name = \"sim-2\"\ncustomer = \"Isännöinti Oy\"",
            1,
        )
        .replacen("name = \"sim-3\"", "name = \"sim-3\"\nbilled = false", 1);
    std::fs::write(env.config_path(), text).unwrap();
    {
        let _ = huoltosync::store::Store::open(&env.config.store.path).unwrap();
    }
    env.db()
        .execute_batch(
            "INSERT INTO api_calls VALUES ('sim-1', '2026-09-01', 'POST ilmoitukset/selaa', 1000), ('sim-1', '2026-09-30', 'GET ilmoitukset/{id}', 500),
                                          ('sim-2', '2026-09-15', 'POST ilmoitukset/selaa', 1000), ('sim-3', '2026-09-15', 'POST ilmoitukset/selaa', 5000),
                                          ('sim-1', '2026-10-01', 'POST ilmoitukset/selaa', 77);",
        )
        .unwrap();
    let (code, out, err) = env.cli(&["cost", "--month", "2026-09", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["days_in_month"].as_u64(), r["total_calls"].as_u64()),
        (Some(30), Some(7500))
    );
    let customers = r["customers"].as_array().unwrap();
    assert_eq!(
        customers.len(),
        1,
        "the test account sim-3 is not billed: {out}"
    );
    let c = &customers[0];
    assert_eq!(
        (
            c["customer"].as_str(),
            c["calls"].as_u64(),
            c["projected_calls"].as_u64()
        ),
        (Some("Isännöinti Oy"), Some(2500), Some(2500))
    );
    let prices: Vec<(String, f64, bool)> = c["projected_prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["package"].as_str().unwrap().to_owned(),
                p["eur"].as_f64().unwrap(),
                p["cheapest"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        prices,
        [
            ("Standard".into(), 5.5, true),
            ("Normal".into(), 240.0, false),
            ("Business".into(), 400.0, false)
        ]
    );
    // The default schedule polls 96 times a day: 2 880 polls in September at 1 call each, per account.
    assert_eq!(c["schedule_calls_per_month"].as_u64(), Some(5760));
    assert_eq!(c["schedule_prices"][0]["eur"].as_f64(), Some(41.36));
    assert!(r["note"].as_str().unwrap().contains("other integrations"));
    // Webhooks: hourly reconciliation (720 sweeps in September, 1 call each, two accounts) and
    // no events yet, plus the 500 € add-on, against polling's 5 760 calls.
    let w = &c["webhooks"];
    assert_eq!(
        (
            w["polling_calls_per_month"].as_u64(),
            w["polling_eur"].as_f64()
        ),
        (Some(5760), Some(41.36))
    );
    assert_eq!(
        (
            w["webhook_calls_per_month"].as_u64(),
            w["webhook_eur"].as_f64()
        ),
        (Some(1440), Some(500.0))
    );
    assert_eq!(w["webhooks_cheaper"], false);
    let (code, _, err) = env.cli(&["cost", "--month", "2026-13"]).await;
    assert_eq!(code, 2, "an invalid month is bad usage: {err}");
    assert!(err.contains("2026-13"), "{err}");
}

#[tokio::test]
async fn purge_erases_personal_data_of_old_closed_tickets_from_the_files() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let ids = env.open_ids("sim-1");
    let phone = |id: i64| -> String {
        env.db()
            .query_row(
                "SELECT reporter_phone FROM tickets WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
    };
    let (old, recent, open) = (phone(ids[0]), phone(ids[1]), phone(ids[2]));
    env.patch("sim-1", ids[0], json!({"Tila": "Valmis"}));
    env.patch("sim-1", ids[1], json!({"Tila": "Valmis"}));
    env.sync_ok().await;
    env.db()
        .execute(
            "UPDATE tickets SET left_at = '2026-01-01T00:00:00.000Z' WHERE id = ?1",
            [ids[0]],
        )
        .unwrap();
    let bytes = || {
        let mut b = std::fs::read(&env.config.store.path).unwrap();
        b.extend(std::fs::read(env.config.store.path.with_extension("db-wal")).unwrap_or_default());
        b
    };
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    // An old webhook event whose ReferenceJson carried the resident's number.
    env.db()
        .execute(
            "INSERT INTO webhook_events (event_key, received_at, account, action, reference_id, reference_json, status)
             VALUES (1, '2026-01-01T00:00:00.000Z', 'sim-1', 'IlmoitusUusi', ?1, ?2, 'fetched')",
            rusqlite::params![ids[0], format!("{{\"Puhelin\":\"{old}\"}}")],
        )
        .unwrap();
    let (code, out, _) = env.cli(&["purge", "--dry-run", "--json"]).await;
    assert_eq!(code, 0);
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            dry["tickets_erased"].as_u64(),
            dry["events_erased"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(contains(&bytes(), &old), "a dry run changes nothing");
    let (code, out, _) = env.cli(&["purge"]).await;
    assert_eq!(code, 0, "{out}");
    let all = bytes();
    assert!(
        !contains(&all, &old),
        "the old closed ticket's phone number is gone from the store files"
    );
    assert!(
        contains(&all, &recent) && contains(&all, &open),
        "recent and open tickets are untouched"
    );
    let (title, history): (Option<String>, i64) = env
        .db()
        .query_row("SELECT title, (SELECT count(*) FROM ticket_changes WHERE ticket_id = ?1) FROM tickets WHERE id = ?1", [ids[0]], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert!(
        title.is_some() && history == 2,
        "the ticket and its workflow history stay"
    );
    let raw: String = env
        .db()
        .query_row(
            "SELECT raw_json FROM tickets WHERE id = ?1",
            [ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !raw.contains("Ilmoittaja") && raw.contains("Otsikko"),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_prometheus_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Setup::tickets(7)
        .sections(&format!(
            "{EVERY_SECOND}[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .start()
        .await;
    let daemon = env.daemon(&[]).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut body = String::new();
    for _ in 0..60 {
        if let Ok(r) = reqwest::get(&url).await {
            body = r.text().await.unwrap_or_default();
            if body.contains("huoltosync_open_tickets{account=\"sim-1\"} 7") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop(Duration::from_secs(15)).await;
    for metric in [
        "huoltosync_open_tickets{account=\"sim-1\"} 7",
        "huoltosync_sync_duration_seconds",
        "huoltosync_dead_letters{account=\"sim-1\"} 0",
        "huoltosync_last_success_timestamp_seconds",
    ] {
        assert!(body.contains(metric), "{metric} missing from:\n{body}");
    }
}

#[test]
fn both_units_verify_and_rate_an_exposure_of_2_or_lower() {
    let dir = crate::helpers::repo().join("systemd");
    for unit in ["huoltosync.service", "huoltosync-once.service"] {
        let verify = std::process::Command::new("systemd-analyze")
            .args(["verify", unit])
            .current_dir(&dir)
            .output()
            .expect("systemd-analyze is installed");
        let text = String::from_utf8_lossy(&verify.stderr).into_owned()
            + &String::from_utf8_lossy(&verify.stdout);
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.trim().is_empty() && !l.contains("/usr/local/bin/huoltosync is not executable")
            })
            .collect();
        assert!(problems.is_empty(), "{unit}: {problems:?}");
        let security = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=yes", unit])
            .current_dir(&dir)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&security.stdout);
        let score: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level in {out}"));
        assert!(score <= 2.0, "{unit}: exposure {score}");
        // The default soft limit of 1 024 file descriptors is too few for the listener.
        let text = std::fs::read_to_string(dir.join(unit)).unwrap();
        let nofile: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .and_then(|v| v.split(':').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no LimitNOFILE"));
        assert!(nofile >= 16_384, "{unit}: LimitNOFILE={nofile}");
        // A bound on memory as a defence in depth (issue 19: parallel sign-ins grew it by GBs).
        assert!(
            text.lines().any(|l| l.starts_with("MemoryMax=")),
            "{unit}: no MemoryMax="
        );
    }
}

#[test]
fn the_units_set_notify_access_once_and_document_what_the_readme_installs() {
    let root = crate::helpers::repo();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // Every shell block of the Install section: the package's and the hand-made install's.
    let section = readme
        .split("## Install\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has an Install section");
    let install: String = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|s| s.split("```").next())
        .collect();
    assert!(
        install.contains("install -D -m 0644 README.md /usr/share/doc/huoltosync/README.md"),
        "the hand-made install puts the README where the units' Documentation= points"
    );
    for unit in ["huoltosync.service", "huoltosync-once.service"] {
        let text = std::fs::read_to_string(root.join("systemd").join(unit)).unwrap();
        let settings: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        let times = |key: &str| settings.iter().filter(|(k, _)| *k == key).count();
        assert!(
            times("NotifyAccess") <= 1,
            "{unit}: NotifyAccess= set twice"
        );
        let docs: Vec<&str> = settings
            .iter()
            .filter(|(k, _)| *k == "Documentation")
            .flat_map(|(_, v)| v.split_whitespace())
            .collect();
        assert!(!docs.is_empty(), "{unit}: no Documentation=");
        for doc in docs {
            match doc.strip_prefix("file://") {
                Some(path) => assert!(
                    install.contains(path),
                    "{unit}: Documentation={doc} is not installed by the README's install steps"
                ),
                None => assert!(
                    doc.starts_with("man:") || doc.starts_with("https://"),
                    "{unit}: {doc}"
                ),
            }
        }
    }
}

#[tokio::test]
async fn under_the_journal_log_lines_carry_no_timestamp_of_their_own() {
    let env = Setup::tickets(2).start().await;
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("Sync finished."))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].trim_start().starts_with("INFO"),
        "the journal stamps lines itself: {err}"
    );
    assert!(
        lines[0].contains("account=sim-1"),
        "lines about an account carry it: {err}"
    );
    let (_, _, plain) = env.cli(&["run", "--once"]).await;
    assert!(
        plain.lines().any(|l| l.starts_with("20")),
        "a terminal or file gets timestamps: {plain}"
    );
}
