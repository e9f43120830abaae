//! Applications: install into the app slot over the UART (plain frames carrying the
//! vendor-signed image; every check is on the device, see `flashgate_protocol::app`) and start
//! with a function call through [`AppCallTable`]: no reset, the OS keeps its state (uptime,
//! record counter, open link).

use core::sync::atomic::{AtomicPtr, Ordering};

use flashgate_protocol::app::{
    verify_installed_app, AppCallTable, AppEntry, AppInstaller, APP_ABI_VERSION,
};
use flashgate_protocol::boot;
use flashgate_protocol::uart::msg;
use flashgate_protocol::ErrorCode;

use crate::Os;

/// Apps started since boot and what the last one returned.
#[derive(Default)]
pub struct AppState {
    installer: Option<AppInstaller>,
    /// Apps started since the OS booted.
    pub started: u32,
    /// Version of the app started last.
    pub version: u32,
    /// Return value of the app started last.
    pub last_status: u32,
}

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
    with_os(|os| os.send(msg::APP_LOG, bytes));
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

fn ack(os: &mut Os, step: u8, value: u32) {
    let mut payload = [0u8; 5];
    payload[0] = step;
    payload[1..].copy_from_slice(&value.to_le_bytes());
    os.send(msg::APP_ACK, &payload);
}

/// Handles one app request.
pub fn handle(os: &mut Os, msg_type: u8, payload: &[u8]) -> Result<(), ErrorCode> {
    let record = boot::read_device_record(&mut os.board.flash)?;
    match msg_type {
        msg::APP_BEGIN => {
            os.apps.installer = None;
            let installer = AppInstaller::begin(&mut os.board.flash, &record, payload)?;
            os.apps.installer = Some(installer);
            ack(os, msg_type, 0);
        }
        msg::APP_DATA => {
            let (offset, bytes) = payload.split_at_checked(4).ok_or(ErrorCode::BadLength)?;
            let offset = u32::from_le_bytes(offset.try_into().map_err(|_| ErrorCode::BadLength)?);
            let installer = os
                .apps
                .installer
                .as_mut()
                .ok_or(ErrorCode::UnexpectedMessage)?;
            let result = installer.data(&mut os.board.flash, offset, bytes);
            match result {
                Ok(received) => ack(os, msg_type, received),
                Err(code) => {
                    os.apps.installer = None;
                    return Err(code);
                }
            }
        }
        msg::APP_COMMIT => {
            let installer = os
                .apps
                .installer
                .take()
                .ok_or(ErrorCode::UnexpectedMessage)?;
            let app = installer.commit(&mut os.board.flash)?;
            ack(os, msg_type, app.version);
        }
        msg::APP_START => {
            let app = verify_installed_app(&mut os.board.flash, &record)?;
            let status = start(os, app.entry);
            os.apps.started += 1;
            os.apps.version = app.version;
            os.apps.last_status = status;
            ack(os, msg_type, status);
        }
        _ => return Err(ErrorCode::UnknownMessage),
    }
    Ok(())
}

/// Calls the app's entry with the call table; returns its status.
fn start(os: &mut Os, entry: u32) -> u32 {
    // SAFETY: `entry` comes from `verify_installed_app`: a vendor-signed app whose digest was
    // just checked, with its Thumb entry inside its body, linked for this slot against the
    // `AppEntry` ABI. The app owns APP_RAM and runs on our stack, and returns.
    let entry: AppEntry = unsafe { core::mem::transmute::<usize, AppEntry>(entry as usize) };
    let me: *mut Os = os;
    CURRENT_OS.store(me, Ordering::Release);
    let status = entry(&CALL_TABLE);
    CURRENT_OS.store(core::ptr::null_mut(), Ordering::Release);
    status
}
