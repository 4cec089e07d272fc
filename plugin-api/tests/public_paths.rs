//! The SDK's public names are a contract with plugins built outside this repository: each stays at
//! `steward::NAME`, whichever file of the SDK defines it. This test names every one by that path
//! (the macros by using them), so moving code without its re-export fails to compile here.

use std::time::Duration;

fn entry_fn(_: &mut steward::Worker) -> Result<(), steward::WorkerError> {
    Ok(())
}
steward::worker_entry!(entry_fn);

fn hook_fn(_: &mut steward::Startup) -> Result<(), String> {
    Ok(())
}
steward::startup_hook!(hook_fn);

fn init(_: &mut steward::Registrar<'_>) -> Result<(), steward::InitError> {
    Ok(())
}
steward::plugin! { name: "public_paths", init: init }

fn takes_setting<T: steward::SettingValue>() {}

fn takes_shareable<T: steward::Shareable>() {}

steward::shareable! {
    #[repr(C)]
    struct Shared {
        counter: std::sync::atomic::AtomicU64,
    }
}

#[test]
fn every_public_name_is_at_the_crate_root() {
    assert!(!steward::SDK_VERSION.is_empty());
    assert_eq!(steward::entry!(entry_fn).function, "entry_fn");
    assert_eq!(steward::entry!(hook_fn), steward::EntryPoint::local("hook_fn"));
    let worker = steward::BackgroundWorker::new("w", steward::EntryPoint::new("lib", "f"))
        .start_time(steward::StartTime::Running)
        .restart(steward::RestartPolicy::after(Duration::from_secs(1)));
    // No host is here, so registering after init is refused as frozen.
    assert_eq!(
        steward::register_after_init(worker, "public_paths"),
        Err(steward::RegisterError::RegistryFrozen)
    );
    takes_setting::<bool>();
    let _: Option<steward::SettingError> = None;
    let _: Option<(steward::Region, steward::RegionError, steward::WaitResult)> = None;
    takes_shareable::<Shared>();
    let _: Option<(steward::Lock, steward::LockError)> = None;
    let _: Option<(steward::ExclusiveGuard<'_>, steward::SharedGuard<'_>)> = None;
    let _ = (steward::__run_init, steward::__run_worker, steward::__run_hook);
    // No host here either: a latch cannot be set.
    assert!(!steward::LatchHandle::NONE.set());
    assert!(!steward::LatchHandle::from_raw(1).set());
    let _ = steward::AtomicLatchHandle::new(steward::LatchHandle::NONE).load();
    assert_eq!(steward_plugin_header.magic, steward::abi::PLUGIN_MAGIC);
}
