//! The export macros: `plugin!` (the header and init), `worker_entry!` and `startup_hook!` (checked
//! entry descriptors), and `entry!` (a compile-time-checked name for registration).
//!
//! Runs in: the plugin's compiler; what they expand to runs in the plugin. They name everything
//! through `$crate::`, so a plugin needs no `use` of the SDK for them; `#[macro_export]` puts
//! them at the crate root (`steward::plugin!`), whatever file they are written in.

/// Exports the plugin header and init function. Use once per plugin crate:
///
/// ```ignore
/// steward::plugin! { name: "hello", init: init }
/// fn init(reg: &mut steward::Registrar) -> Result<(), steward::InitError> { Ok(()) }
/// ```
///
/// `name` must match the library's file name (`lib<name>.so`).
#[macro_export]
macro_rules! plugin {
    (name: $name:literal, init: $init:path $(,)?) => {
        #[doc(hidden)]
        pub const __STEWARD_PLUGIN_NAME: &str = $name;

        #[doc(hidden)]
        unsafe extern "C" fn __steward_init(host: *const $crate::abi::HostApi) -> $crate::abi::Status {
            // SAFETY: the host calls this with its own table.
            unsafe { $crate::__run_init(host, $name, $init) }
        }

        #[no_mangle]
        #[used]
        pub static steward_plugin_header: $crate::abi::PluginHeader = $crate::abi::PluginHeader {
            magic: $crate::abi::PLUGIN_MAGIC,
            abi_major: $crate::abi::ABI_MAJOR,
            abi_minor: $crate::abi::ABI_MINOR,
            header_size: ::std::mem::size_of::<$crate::abi::PluginHeader>() as u32,
            fingerprint: $crate::abi::LAYOUT_FINGERPRINT,
            name: $crate::abi::Str::new($name),
            version: $crate::abi::Str::new(env!("CARGO_PKG_VERSION")),
            sdk_version: $crate::abi::Str::new($crate::SDK_VERSION),
            init: __steward_init,
        };
    };
}

/// Exports `fn NAME(&mut Worker) -> Result<(), WorkerError>` as a worker entry named `NAME`.
///
/// The exported symbol carries a magic and the ABI fingerprint, so the host can tell a Steward
/// entry from any other symbol. Panics are caught inside the plugin: the worker exits with code 1.
#[macro_export]
macro_rules! worker_entry {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_worker_entry__",
            $crate::abi::ENTRY_MAGIC,
            $crate::__run_worker
        );
    };
}

/// Exports `fn NAME(&mut Startup) -> Result<(), String>` as a startup hook named `NAME`; register
/// it with [`Registrar::register_startup_hook`] and [`entry!`]. An `Err` or a panic fails the hook,
/// which stops the host with the hook's name and the reason.
///
/// [`Registrar::register_startup_hook`]: crate::Registrar::register_startup_hook
/// [`entry!`]: crate::entry!
#[macro_export]
macro_rules! startup_hook {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_startup_hook__",
            $crate::abi::HOOK_MAGIC,
            $crate::__run_hook
        );
    };
}

// issue 14: segment init
/// Exports `fn NAME(&mut SegmentInit) -> Result<(), String>` as a segment init hook named `NAME`;
/// register it with [`Registrar::on_segment_init`] and [`entry!`]. It runs on every new segment,
/// before any worker starts. An `Err` or a panic fails the hook, which stops the host with the
/// hook's name and the reason.
///
/// [`Registrar::on_segment_init`]: crate::Registrar::on_segment_init
/// [`entry!`]: crate::entry!
#[macro_export]
macro_rules! segment_init {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_segment_init__",
            $crate::abi::SEGINIT_MAGIC,
            $crate::__run_segment_init
        );
    };
}

// issue 15: connections
/// Exports `fn NAME(&mut Connection) -> Result<(), WorkerError>` as a connection handler named
/// `NAME`; register it with [`Registrar::register_connection_handler`] and [`entry!`]. The host
/// runs it in a child of its own for each accepted client; it ends the connection when it
/// returns. An `Err` or a panic ends only this connection (exit code 1).
///
/// [`Registrar::register_connection_handler`]: crate::Registrar::register_connection_handler
/// [`entry!`]: crate::entry!
#[macro_export]
macro_rules! connection_entry {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_connection_entry__",
            $crate::abi::CONN_MAGIC,
            $crate::__run_connection
        );
    };
}

/// Exports `fn NAME(&mut Rejection)` as a rejection writer named `NAME`, for
/// [`ConnectionHandler::rejection`]: it writes the protocol's own answer to a client the host
/// turns away ([`Rejection::admission`] says why).
///
/// [`ConnectionHandler::rejection`]: crate::ConnectionHandler::rejection
/// [`Rejection::admission`]: crate::Rejection::admission
#[macro_export]
macro_rules! rejection_entry {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_rejection_entry__",
            $crate::abi::REJECT_MAGIC,
            $crate::__run_rejection
        );
    };
}

/// The export both [`worker_entry!`] and [`startup_hook!`] expand to: a module named after the
/// function holding its name and a checked descriptor exported as `<prefix><name>`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_entry {
    ($f:ident, $prefix:literal, $magic:path, $runner:path) => {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        pub mod $f {
            pub const NAME: &str = stringify!($f);

            unsafe extern "C" fn run(api: *const $crate::abi::WorkerApi) -> i32 {
                // SAFETY: the host calls entries and hooks with its own table.
                unsafe { $runner(api, super::$f) }
            }

            #[export_name = concat!($prefix, stringify!($f))]
            #[used]
            pub static ENTRY: $crate::abi::WorkerEntry = $crate::abi::WorkerEntry {
                magic: $magic,
                abi_major: $crate::abi::ABI_MAJOR,
                _reserved: [0; 3],
                fingerprint: $crate::abi::LAYOUT_FINGERPRINT,
                run,
            };
        }
    };
}

/// Names a worker entry or startup hook of this crate, exported with [`worker_entry!`] or
/// [`startup_hook!`]: a typo fails to compile.
#[macro_export]
macro_rules! entry {
    ($f:ident) => {
        $crate::EntryPoint::local($f::NAME)
    };
}
