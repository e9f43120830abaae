//! The vendor's image tool behind `flashgate image keygen|sign|verify|inspect`: key files,
//! signing (a key file or an external signer such as an HSM or a cloud KMS), and the checks
//! a device makes of an image, done on the host. The byte formats are the protocol crate's
//! (`image`, `trust_anchors`, the slot map in `ImageKind::slot`); nothing here redefines them.
//!
//! - [`key_file`]: ed25519 key files (mode 0600, never overwritten);
//! - [`signer`]: who signs, and the external signer's contract;
//! - [`elf`]: the loadable bytes of an ELF file;
//! - [`body`]: an input body, its slot fit, its entry and its trust-anchor block;
//! - [`sign`]: the signing flow; [`inspect`]: a signed image's checks.

pub mod body;
pub mod elf;
pub mod inspect;
pub mod key_file;
pub mod sign;
pub mod signer;

use flashgate_protocol::image::ImageKind;

/// "a bootloader image", "an os image": the kind with its article, for messages.
pub(crate) fn an_image(kind: ImageKind) -> String {
    let article = if kind.name().starts_with(['a', 'o']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {} image", kind.name())
}
