//! Error codes shared by target and host.
//!
//! Each refusal has its own code so that a station (and a test) can tell a flipped bit from
//! a replayed chunk from a bad vendor signature. The codes cross the debug link and the UART
//! in clear: they say what went wrong, never anything secret.

use core::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal => $text:literal, )*) => {
        /// Why the target or the host refused something.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u32)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ErrorCode {
            /// Decodes a code received over a link; `None` for a value this build does not know.
            pub fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// Every code, for tests that check they stay distinct.
            pub const ALL: &'static [ErrorCode] = &[ $( Self::$name, )* ];

            fn text(self) -> &'static str {
                match self { $( Self::$name => $text, )* }
            }
        }
    };
}

error_codes! {
    // Framing and sequencing (the debug link or UART delivered something malformed).
    /// A message is shorter or longer than its format allows.
    BadLength = 0x0101 => "message has the wrong length",
    /// A magic number or version field is not the one this build speaks.
    BadMagic = 0x0102 => "unknown magic or format version",
    /// A message type that is not defined.
    UnknownMessage = 0x0103 => "unknown message type",
    /// A well-formed message that is not allowed in the current state.
    UnexpectedMessage = 0x0104 => "message not allowed at this step",
    /// A UART frame whose checksum does not match (line noise).
    BadChecksum = 0x0105 => "frame checksum mismatch",
    // Authenticity of the session.
    /// The AEAD tag did not verify: the ciphertext or its header was altered.
    BadTag = 0x0201 => "authentication tag mismatch: the frame was altered",
    /// A frame with a sequence number already consumed.
    Replay = 0x0202 => "replayed frame",
    /// A frame that skips ahead of the expected sequence number.
    OutOfOrder = 0x0203 => "frame out of order",
    /// The key-confirmation frame did not verify: the station does not hold the key named
    /// in the parameter block (or the transcripts differ).
    KeyConfirmationFailed = 0x0204 => "key confirmation failed: wrong station key",
    /// The peer's public key gives a non-contributory (low-order) shared secret.
    WeakPublicKey = 0x0205 => "peer public key is of low order",
    /// The loader reports a digest other than the image the station wrote.
    LoaderMismatch = 0x0207 => "loader in RAM is not the image the station wrote",
    /// The session already failed; it accepts nothing more.
    SessionAborted = 0x0206 => "session aborted after an earlier error",
    /// An update package whose content key, or a device key sealed to the loader, does not
    /// open on this device: it was made for another device (or altered).
    WrongDevice = 0x0208 => "sealed for another device (or altered)",
    // Images.
    /// Vendor signature over an image header does not verify.
    BadSignature = 0x0301 => "vendor signature does not verify",
    /// The image body does not hash to the digest in its signed header.
    DigestMismatch = 0x0302 => "image digest does not match its signed header",
    /// Fewer bytes arrived than the signed header announces.
    ImageIncomplete = 0x0303 => "image is truncated",
    /// An image larger than its slot, or data beyond the announced size.
    ImageTooLarge = 0x0304 => "image does not fit its slot",
    /// The image is for another product.
    WrongProduct = 0x0305 => "image is for another product",
    /// The image is of the wrong kind for this slot (e.g. an app where a bootloader goes).
    WrongImageKind = 0x0306 => "image is of the wrong kind",
    /// The image's version is below the device's anti-rollback floor.
    Rollback = 0x0307 => "image version is below the anti-rollback floor",
    /// Image data written at an offset other than the next expected one.
    BadOffset = 0x0308 => "image data at an unexpected offset",
    /// The image's load address is not where this slot expects it.
    BadLoadAddress = 0x0309 => "image load address does not match its slot",
    /// A bootloader or OS body without a trust-anchor block at its fixed offset (not linked
    /// with a `.trust_anchors` section), or one that cannot be read.
    NoTrustAnchors = 0x030A => "image has no trust-anchor block at its fixed offset",
    /// An app install without a valid authorisation for this device (made with its key).
    NotAuthorized = 0x030B => "app install is not authorised for this device",
    // Device state.
    /// No valid OS image is installed.
    NoValidImage = 0x0401 => "no valid image installed",
    /// The device record (identity, configuration, key) is missing or corrupt.
    NotProvisioned = 0x0402 => "device is not provisioned",
    /// Configuration names another serial than this board's unique ID.
    WrongSerial = 0x0403 => "configuration is for another serial",
    /// Flash refused an operation (not erased, out of range, misaligned).
    Flash = 0x0404 => "flash operation failed",
    /// The target has no entropy source that works.
    Entropy = 0x0405 => "entropy source failed",
    /// The test application reported failure or could not run.
    TestFailed = 0x0406 => "test application failed",
    /// This target (or build) cannot load and run a test application.
    NoTestRunner = 0x0408 => "this target cannot run a test application",
    /// A reply or receipt from the target does not match what was sent.
    ReceiptMismatch = 0x0407 => "receipt does not match what was sent",
    // Data streams (0x05xx): why a sealed record was refused; each is counted by the receiver.
    /// The record's tag does not verify under its device's key for its epoch (forged or altered).
    DataForged = 0x0501 => "data record does not authenticate: forged or altered",
    /// The record's counter was already accepted.
    DataReplay = 0x0502 => "data record is a replay",
    /// The record's counter is further behind the newest accepted one than the window allows.
    DataTooOld = 0x0503 => "data record is older than the replay window",
    /// The record ends before its header or tag.
    DataTruncated = 0x0504 => "data record is truncated",
    /// The record's header or plaintext does not follow the format.
    DataMalformed = 0x0505 => "data record is malformed",
    /// No registered device has the record's device id.
    DataUnknownDevice = 0x0506 => "data record names an unknown device",
    /// The record's epoch was retired by a rotation, or is more than one ahead.
    DataStaleEpoch = 0x0507 => "data record is for an epoch that is not open",
    /// The device cannot seal another record in this epoch without persisting or rotating.
    DataCounterExhausted = 0x0508 => "record counter not reserved or exhausted",
    /// The receiver dropped the record unread: its source sent more than its rate limit allows.
    DataRateLimited = 0x0509 => "data record dropped: its source exceeds its rate limit",
    /// The record authenticates but reuses a counter of an accepted record with other contents,
    /// or continues an epoch the device closed by rotating: two devices share one device key.
    DataDiverged = 0x050A => "data record diverges from one already accepted: two devices behind one identity",
    /// The receiver dropped the record unread: its queue of records read but not yet verified
    /// was full (all sources together, or this source's share).
    DataOverloaded = 0x050B => "data record dropped: the receiver's queue is full",
    /// The record was read but its batch could not be stored (the store refused or did not
    /// answer): it was not accepted, and is counted so the loss is visible.
    DataNotStored = 0x050C => "data record not stored: the store did not take its batch",
    /// The install stopped at the step the host asked for (power-cut tests).
    InstallHalted = 0x0409 => "install halted at the requested step",
    /// A newly installed image did not confirm itself within its boot attempts; the previous
    /// image was restored.
    NotConfirmed = 0x040A => "new image never confirmed itself; previous image restored",
    /// The bootloader holds the OS back because the OS asked for an update (`enter update`).
    UpdateMode = 0x040B => "bootloader held in update mode on request",
    /// The device record names another serial than this chip's unique ID: the flash was
    /// copied from another board (a clone), or written for another chip.
    UidMismatch = 0x0410 => "device record is for another chip: its serial is not this chip's unique ID",
    /// The device certificate does not verify under the authority key this image pins (forged,
    /// altered, or signed by another product's authority).
    BadCertificate = 0x0411 => "device certificate does not verify under the pinned authority key",
    /// The device certificate is valid but for another chip, product or device key.
    CertificateMismatch = 0x0412 => "device certificate is for another chip, product or device key",
    /// The vendor or authority key in the configuration (or the device record) is not the one
    /// pinned in the signed bootloader (or OS) image.
    TrustAnchorMismatch = 0x0413 => "keys differ from the ones pinned in the signed image",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {:#06x})", self.text(), *self as u32)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for (i, a) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(ErrorCode::from_u32(*a as u32), Some(*a));
            for b in &ErrorCode::ALL[i + 1..] {
                assert_ne!(*a as u32, *b as u32);
            }
        }
        assert_eq!(ErrorCode::from_u32(0xdead), None);
    }

    #[test]
    fn display_names_code() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            ErrorCode::Replay.to_string(),
            "replayed frame (code 0x0202)"
        );
    }
}
