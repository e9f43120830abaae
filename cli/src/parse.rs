//! Arguments several command groups read the same way: digests and keys, device serials, time
//! windows.

use crate::exit::Failure;

/// 32 bytes given as 64 hex characters (a digest or a public key); `what` names the flag.
pub fn hex32(text: &str, what: &str) -> Result<Vec<u8>, Failure> {
    let bytes =
        hex::decode(text.trim()).map_err(|_| Failure::usage(format_args!("{what} must be hex")))?;
    if bytes.len() != 32 {
        return Err(Failure::usage(format_args!(
            "{what} must be 32 bytes (64 hex chars)"
        )));
    }
    Ok(bytes)
}

/// A device serial, 32 hex characters; `what` names the flag or argument.
pub fn serial(text: &str, what: &str) -> Result<[u8; 16], Failure> {
    flashgate_proto::serial::from_hex(text.trim())
        .ok_or_else(|| Failure::usage(format_args!("{what} {text:?} must be 32 hex characters")))
}

/// `--since/--until/--limit`: a window of a list kept in time order (a device's install time,
/// a record's reception time).
#[derive(clap::Args)]
pub struct Window {
    /// At or after this time (unix ms; 0: from the start).
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    /// Before this time (unix ms; 0: no end).
    #[arg(long, default_value_t = 0)]
    pub until: i64,
    /// At most this many (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
}
