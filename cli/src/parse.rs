//! Argument values every command group reads the same way: digests and keys, device serials.

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
