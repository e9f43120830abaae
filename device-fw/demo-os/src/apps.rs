//! Starting applications: the protocol crate's `uart::OsService` installs them into the app
//! slot over the UART (every check is on the device, see `flashgate_protocol::app`) and hands
//! back a verified [`AppImage`]; [`start`] calls its entry
//! with [`AppCallTable`]: no reset, the OS keeps its state (uptime, record counter, open
//! link).
#![allow(
    unsafe_code,
    reason = "the app ABI: raw pointers across the call into an app"
)]

use core::sync::atomic::{AtomicPtr, Ordering};

use flashgate_protocol::app::{AppCallTable, AppEntry, AppImage, APP_ABI_VERSION};
use flashgate_protocol::uart::DeviceMessage;
use flashgate_protocol::ErrorCode;

use crate::Os;

/// The OS while an app runs; null otherwise. Set and cleared by [`start`] only.
static CURRENT_OS: AtomicPtr<Os> = AtomicPtr::new(core::ptr::null_mut());

fn with_os<R>(f: impl FnOnce(&mut Os) -> R) -> Option<R> {
    let os = CURRENT_OS.load(Ordering::Acquire);
    if os.is_null() {
        return None;
    }
    // SAFETY: `start` stores a pointer derived from its `&mut Os` for the duration of the app
    // call and does not use that reference until the call returns; the core is single threaded
    // with no interrupts enabled, so this is the only live access to the OS.
    Some(f(unsafe { &mut *os }))
}

/// # Safety (for the app)
/// `text` must point to `len` readable bytes.
extern "C" fn app_log(text: *const u8, len: usize) {
    if text.is_null() {
        return;
    }
    // SAFETY: the ABI (`AppCallTable::log`) requires `len` readable bytes at `text`.
    let bytes = unsafe { core::slice::from_raw_parts(text, len.min(512)) };
    with_os(|os| os.send(&DeviceMessage::AppLog(bytes)));
}

extern "C" fn app_uptime_ticks() -> u64 {
    with_os(|os| os.uptime.poll()).unwrap_or(0)
}

extern "C" fn app_emit_record(body: *const u8, len: usize) -> i64 {
    if body.is_null() {
        return -(ErrorCode::BadLength as i64);
    }
    // SAFETY: the ABI (`AppCallTable::emit_record`) requires `len` readable bytes at `body`.
    let bytes = unsafe { core::slice::from_raw_parts(body, len.min(2048)) };
    match with_os(|os| os.emit_telemetry(bytes)) {
        Some(Ok(counter)) => i64::from(counter),
        Some(Err(code)) => -(code as i64),
        None => -(ErrorCode::UnexpectedMessage as i64),
    }
}

static CALL_TABLE: AppCallTable = AppCallTable {
    abi_version: APP_ABI_VERSION,
    log: app_log,
    uptime_ticks: app_uptime_ticks,
    emit_record: app_emit_record,
};

/// Calls the app's entry with the call table; returns its status.
pub fn start(os: &mut Os, app: &AppImage) -> u32 {
    // SAFETY: `app` comes from `OsAction::StartApp`, i.e. `verify_installed_app`: a
    // vendor-signed app whose digest was just checked, with its Thumb entry inside its body,
    // linked for this slot against the `AppEntry` ABI. The app owns APP_RAM and runs on our
    // stack, and returns.
    let entry: AppEntry = unsafe { core::mem::transmute::<usize, AppEntry>(app.entry as usize) };
    let me: *mut Os = os;
    CURRENT_OS.store(me, Ordering::Release);
    let status = entry(&CALL_TABLE);
    CURRENT_OS.store(core::ptr::null_mut(), Ordering::Release);
    status
}
