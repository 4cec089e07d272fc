//! `hello`: the demo plugin, a worker_spi-like greeter.
//!
//! Runs in: the supervisor (init) and each `hello-N` worker process.
//!
//! Init defines three settings (all with defaults, so an empty `[plugins.hello]` works), requests
//! one region of counters, and registers `workers` greeters. Each greeter wakes every `interval`,
//! bumps its counter in the shared region and logs the greeting with the count.
//!
//! Dynamic greeters: after a reload that raises `launch`, `hello-1` launches dynamic greeters
//! `hello-dyn-K` until there are `launch` of them, and logs `launched hello-dyn-K` or `launch of
//! hello-dyn-K refused: ERROR` (with `[plugins.hello] reserved_worker_slots`, a slot kept for
//! them whatever other plugins launch).

use std::time::Duration;

use steward::{entry, BackgroundWorker, InitError, Registrar, RestartPolicy, WaitResult, Worker, WorkerError};

steward::plugin! { name: "hello", init: init }

const MAX_WORKERS: i64 = 64;

fn init(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    let workers = reg.restart_only(|reg| reg.define_int("workers", 3, 1..=MAX_WORKERS, "number of greeter workers"))?;
    reg.define_duration("interval", Duration::from_secs(1), "how often each greeter says hello")?;
    reg.define_string("greeting", "hello", "what the greeters say")?;
    reg.define_int(
        "launch",
        0,
        0..=MAX_WORKERS / 2 - 1,
        "dynamic greeters hello-1 launches on reload",
    )?;
    reg.request_region("counters", (MAX_WORKERS as u64) * 8)?;
    for i in 0..workers {
        reg.register_background_worker(
            BackgroundWorker::new(format!("hello-{}", i + 1), entry!(greeter))
                .worker_type("greeter")
                .arg(i as u64)
                .restart(RestartPolicy::after(Duration::from_secs(1))),
        )?;
    }
    Ok(())
}

fn greeter(w: &mut Worker) -> Result<(), WorkerError> {
    let fatal = |e: steward::SettingError| WorkerError::fatal(e.to_string());
    let mut interval: Duration = w.setting("interval").map_err(fatal)?;
    let mut greeting: String = w.setting("greeting").map_err(fatal)?;
    let counters = w.region("counters").map_err(|e| WorkerError::fatal(e.to_string()))?;
    let counter = counters
        .atomic_u64(w.arg() as usize)
        .ok_or_else(|| WorkerError::fatal("argument out of range"))?;
    tracing::info!("started");
    let mut launched = 0;
    loop {
        match w.wait(interval) {
            WaitResult::Timeout => {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::info!("{greeting} #{n}");
            }
            WaitResult::Reload => {
                interval = w.setting("interval").map_err(fatal)?;
                greeting = w.setting("greeting").map_err(fatal)?;
                tracing::info!("reloaded: greeting {greeting:?} every {interval:?}");
                let launch: i64 = w.setting("launch").map_err(fatal)?;
                while w.arg() == 0 && launched < launch {
                    launched += 1;
                    let name = format!("hello-dyn-{launched}");
                    let dynamic = BackgroundWorker::new(&name, entry!(greeter))
                        .worker_type("greeter")
                        .arg((MAX_WORKERS / 2 + launched) as u64)
                        .restart(RestartPolicy::never());
                    match w.launch(dynamic) {
                        Ok(_) => tracing::info!("launched {name}"),
                        Err(e) => tracing::info!("launch of {name} refused: {e}"),
                    }
                }
            }
            r if r.should_stop() => return Ok(()),
            // This worker never takes its latch, so `wait` never reports `Latch`; `WaitResult`
            // is non-exhaustive, so a later SDK's reasons to wake land here too.
            _ => {}
        }
    }
}
steward::worker_entry!(greeter);
