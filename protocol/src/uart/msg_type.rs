//! Every message id on the UART, in one enum.
//!
//! Ids below 0x80 travel host → device (requests), ids from 0x80 device → host (replies and
//! unasked frames), except the data and app ranges, which keep both directions side by side:
//!
//! | range       | flow                                                    |
//! |-------------|---------------------------------------------------------|
//! | 0x01, 0x81  | `hello` (any program), 0x82 boot banner, 0xEE error     |
//! | 0x10–0x15   | update transfer and status requests (`update`)          |
//! | 0x90–0x96   | their replies                                           |
//! | 0x30–0x36   | data streams (`data_stream`, its down-link) and the OS status |
//! | 0x40–0x4F   | applications (`app`)                                    |
//! | 0x7B        | a bench or check firmware's report (crypto-bench, net-check; not a product frame) |

use core::fmt;

use crate::ErrorCode;

macro_rules! msg_types {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, )*) => {
        /// The type byte of a UART frame.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum MsgType {
            $( $(#[$doc])* $name = $value, )*
        }

        impl MsgType {
            /// Every message type, for tests that check the ids stay distinct.
            pub const ALL: &'static [MsgType] = &[ $( Self::$name, )* ];
        }

        impl TryFrom<u8> for MsgType {
            type Error = UnknownMsgType;

            fn try_from(value: u8) -> Result<Self, UnknownMsgType> {
                match value {
                    $( $value => Ok(Self::$name), )*
                    other => Err(UnknownMsgType(other)),
                }
            }
        }
    };
}

msg_types! {
    /// Host → device: prove your identity (`challenge[32]`, see `hello`).
    HelloRequest = 0x01,
    /// Device → host: identity and proof.
    HelloResponse = 0x81,
    /// Device → host, unasked: the OS started (text).
    BootBanner = 0x82,
    /// Device → host: the request was refused (`code u32`).
    Error = 0xEE,

    /// Host → bootloader: the update envelope; begins or resumes a transfer.
    UpdateBegin = 0x10,
    /// Host → bootloader: one chunk (`index u32 | ciphertext | tag`).
    UpdateChunk = 0x11,
    /// Host → bootloader: every chunk sent.
    UpdateFinish = 0x12,
    /// Host → bootloader: install the staged image (`halt_after_step u32`, 0 = none).
    UpdateInstall = 0x13,
    /// Host → device: a status receipt for `challenge[32]` (see `update::receipt`).
    StatusRequest = 0x14,
    /// Host → OS: hand over to the bootloader's update service.
    EnterUpdate = 0x15,
    /// Bootloader → host: ready for chunk `next u32` of `count u32`.
    UpdateReady = 0x90,
    /// Bootloader → host: chunk stored, `next u32` is needed.
    ChunkAck = 0x91,
    /// Bootloader → host: the whole image is staged and verified (`version u32`).
    UpdateStaged = 0x92,
    /// Bootloader → host: installed, starting it (`version u32`).
    UpdateInstalled = 0x93,
    /// Bootloader → host: the install stopped after `step u32`, as asked (power-cut tests).
    InstallHalted = 0x94,
    /// Device → host: the status receipt.
    StatusReceipt = 0x95,
    /// Device → host: the update service is ready (sent by the OS before it hands over, and by
    /// the bootloader when it already serves).
    UpdateMode = 0x96,

    /// Device → host, unasked: one sealed data record.
    DataRecord = 0x30,
    /// Host → OS: seal and send `count u8` telemetry records now (tests, bench).
    DataEmit = 0x31,
    /// Host → OS: rotate to a new epoch (the OS sends the sealed rotation record).
    DataRotate = 0x32,
    /// Host → OS: report the OS status.
    OsStatus = 0x33,
    /// OS → host: the status (`OsStatus`: not authenticated, a diagnostic).
    OsStatusReply = 0x34,
    /// Coordinator (network) or host → OS: one sealed down message (`data_stream::down`).
    DataDown = 0x35,
    /// OS → host: a down message's text or effect, as the OS shows it (UTF-8).
    DownLog = 0x36,

    // 0x40 and 0x41 were the clear-text app install (`AppBegin`, `AppData`), retired: apps
    // travel as per-device packages. A device answers them `UnknownMessage`.
    /// Host → OS: every chunk sent; verify the staged app and make it the installed one.
    AppCommit = 0x42,
    /// Host → OS: verify the installed app again and call it (no reset).
    AppStart = 0x43,
    /// OS → host: a line the app logged through the call table.
    AppLog = 0x44,
    /// Host → OS: the envelope of an app package (228 B, `update::package`); checked, then the
    /// app staging slot is erased (the installed app is untouched).
    AppPackageBegin = 0x45,
    /// Host → OS: one chunk of the app package (`index u32 | ciphertext | tag`).
    AppPackageChunk = 0x46,
    /// Host → OS: an app receipt for `challenge[32]` (see `app::receipt`).
    AppStatusRequest = 0x47,
    /// OS → host: the app receipt.
    AppReceipt = 0x48,
    /// OS → host: `step u8 (the request's type) | value u32` (chunk count, next chunk,
    /// version, or the app's return status).
    AppAck = 0x4F,

    /// crypto-bench firmware → host: its report (text, one line per measurement).
    BenchReport = 0x7B,
}

/// A type byte this build does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMsgType(pub u8);

impl From<UnknownMsgType> for ErrorCode {
    fn from(_: UnknownMsgType) -> Self {
        ErrorCode::UnknownMessage
    }
}

impl fmt::Display for UnknownMsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown UART message type {:#04x}", self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for UnknownMsgType {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_distinct() {
        for (i, a) in MsgType::ALL.iter().enumerate() {
            assert_eq!(MsgType::try_from(*a as u8), Ok(*a));
            for b in &MsgType::ALL[i + 1..] {
                assert_ne!(*a as u8, *b as u8, "{a:?} and {b:?}");
            }
        }
        let known = MsgType::ALL.len();
        let unknown = (0..=255u8)
            .filter(|b| MsgType::try_from(*b) == Err(UnknownMsgType(*b)))
            .count();
        assert_eq!(known + unknown, 256);
        assert_eq!(
            ErrorCode::from(UnknownMsgType(0x77)),
            ErrorCode::UnknownMessage
        );
    }
}
