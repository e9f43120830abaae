//! `flashgate image keygen|sign|verify|inspect`: the vendor's image tool (MCUboot's imgtool,
//! ESP-IDF's espsecure for flashgate images). Works on files only and never contacts the
//! coordinator; the flows are the library's [`flashgate_cli::image_tool`].

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use ed25519_dalek::VerifyingKey;
use flashgate_cli::image_tool::body::{Anchors, Input, InputFormat};
use flashgate_cli::image_tool::inspect::{Expect, Inspection};
use flashgate_cli::image_tool::key_file::{self, KeyFileError};
use flashgate_cli::image_tool::sign::{self, SignError, SignRequest};
use flashgate_cli::image_tool::signer::{Signer, SignerError};
use flashgate_protocol::image::{ImageKind, SlotStorage};
use flashgate_protocol::trust_anchors::TrustAnchors;
use serde_json::{json, Value};

use crate::exit::{Exit, Failure};
use crate::output::{Printer, ToJson};
use crate::parse::hex32;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Make a new ed25519 signing key file (mode 0600, never overwritten); prints its public key.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a .bin or ELF body as a flashgate image for its slot.
    Sign(SignArgs),
    /// Check a signed image as a device would: signature, body digest, slot, trust anchors.
    Verify(VerifyArgs),
    /// Show a signed image: header, signature, digest, slot fit, trust anchors.
    Inspect(InspectArgs),
}

/// Image kinds, as typed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    Bootloader,
    Os,
    App,
    TestApp,
}

impl From<KindArg> for ImageKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Bootloader => ImageKind::Bootloader,
            KindArg::Os => ImageKind::Os,
            KindArg::App => ImageKind::App,
            KindArg::TestApp => ImageKind::TestApp,
        }
    }
}

#[derive(Args)]
#[command(group(ArgGroup::new("signer").required(true).args(["key", "signer_cmd"])))]
pub struct SignArgs {
    /// The unsigned body: a raw binary (objcopy -O binary) or an ELF file.
    input: PathBuf,
    /// Where to write the signed image (replaced if it exists).
    #[arg(value_name = "OUTPUT")]
    signed: PathBuf,
    /// What the image is; decides its slot.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Product id.
    #[arg(long)]
    product: u32,
    /// Image version (the anti-rollback floor compares it).
    #[arg(long)]
    version: u32,
    /// Where the body loads (0x… or decimal); checked against the slot map [default: the
    /// ELF's address, or the slot's body address for a .bin].
    #[arg(long, value_parser = parse_address)]
    load_address: Option<u32>,
    /// Vendor public key the image pins (64 hex chars; bootloader and os): the signing key's.
    #[arg(long)]
    vendor_pub: Option<String>,
    /// Product authority public key the image pins (64 hex chars; bootloader and os).
    #[arg(long)]
    authority_pub: Option<String>,
    /// Signing key file (from `flashgate image keygen`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// External signer, run with `sh -c`: the bytes to sign on its stdin, the 64-byte
    /// signature as hex on its stdout (an HSM or KMS holds the key). Needs --public-key.
    #[arg(long, requires = "public_key")]
    signer_cmd: Option<String>,
    /// Public key the signature must verify under (64 hex chars) [default: the key file's].
    #[arg(long)]
    public_key: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The signed image.
    image: PathBuf,
    /// Vendor public key the signature must verify under (64 hex chars).
    #[arg(long)]
    public_key: String,
    /// Refuse unless the image is of this kind.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Refuse unless the image is for this product.
    #[arg(long)]
    product: Option<u32>,
    /// Refuse unless the image pins this authority key (bootloader and os).
    #[arg(long)]
    authority_pub: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The signed image.
    image: PathBuf,
    /// Also check the signature under this vendor public key (64 hex chars).
    #[arg(long)]
    public_key: Option<String>,
}

pub fn run(cmd: ImageCmd, out: &Printer) -> Result<(), Failure> {
    match cmd {
        ImageCmd::Keygen { out: path } => {
            let public = key_file::generate(&path).map_err(key_failure)?;
            let public = hex::encode(public.to_bytes());
            out.done(
                &json!({"key_file": path.display().to_string(), "public_key": public}),
                format_args!(
                    "wrote a new ed25519 signing key to {} (mode 0600)\npublic key: {public}",
                    path.display()
                ),
            );
        }
        ImageCmd::Sign(args) => sign_cmd(args, out)?,
        ImageCmd::Verify(args) => {
            let public = key_arg(&args.public_key, "--public-key")?;
            let authority = args
                .authority_pub
                .as_deref()
                .map(|k| key_arg(k, "--authority-pub").map(|k| k.to_bytes()))
                .transpose()?;
            let inspection = inspect_file(&args.image, Some(&public))?;
            let expect = Expect {
                kind: args.kind.map(Into::into),
                product_id: args.product,
                authority_public: authority,
            };
            let problems = inspection.problems(&expect);
            if !problems.is_empty() {
                return Err(Failure::new(
                    Exit::Refused,
                    format_args!(
                        "{}: verification failed: {}",
                        args.image.display(),
                        problems.join("; ")
                    ),
                ));
            }
            let h = inspection.signed.header;
            out.done(
                &Report(&inspection, &args.image),
                format_args!(
                    "{}: valid {} image for product {}, version {} (signature, digest, slot{})",
                    args.image.display(),
                    h.kind.name(),
                    h.product_id,
                    h.version,
                    if h.kind.pins_trust_anchors() {
                        ", trust anchors"
                    } else {
                        ""
                    }
                ),
            );
        }
        ImageCmd::Inspect(args) => {
            let public = args
                .public_key
                .as_deref()
                .map(|k| key_arg(k, "--public-key"))
                .transpose()?;
            let inspection = inspect_file(&args.image, public.as_ref())?;
            out.details(
                &Report(&inspection, &args.image),
                &fields(&inspection, &args.image),
            );
        }
    }
    Ok(())
}

fn sign_cmd(args: SignArgs, out: &Printer) -> Result<(), Failure> {
    let kind = ImageKind::from(args.kind);
    let signer = match (&args.key, args.signer_cmd) {
        (Some(path), _) => {
            let key = key_file::load(path).map_err(key_failure)?;
            if let Some(given) = &args.public_key {
                let given = key_arg(given, "--public-key")?;
                if given != key.verifying_key() {
                    return Err(Failure::new(
                        Exit::Refused,
                        format_args!("--public-key is not the public half of {}", path.display()),
                    ));
                }
            }
            Signer::Key(key)
        }
        (None, Some(command)) => Signer::Command {
            command,
            public: key_arg(
                args.public_key.as_deref().unwrap_or_default(),
                "--public-key",
            )?,
        },
        (None, None) => unreachable!("clap requires --key or --signer-cmd"),
    };
    let anchors = match (&args.vendor_pub, &args.authority_pub) {
        (None, None) => None,
        (Some(vendor), Some(authority)) => Some(TrustAnchors {
            vendor_public: key_arg(vendor, "--vendor-pub")?.to_bytes(),
            authority_public: key_arg(authority, "--authority-pub")?.to_bytes(),
        }),
        _ => {
            return Err(Failure::usage(
                "--vendor-pub and --authority-pub go together: an image pins both keys",
            ))
        }
    };
    let bytes = read(&args.input)?;
    let input = Input::parse(bytes)
        .map_err(|e| Failure::new(Exit::Refused, format_args!("{}: {e}", args.input.display())))?;
    let format = input.format;
    let request = SignRequest {
        kind,
        product_id: args.product,
        version: args.version,
        load_addr: args.load_address,
        anchors,
    };
    let signed = sign::sign(input, &request, &signer).map_err(|e| sign_failure(e, &args.input))?;
    write_atomically(&args.signed, &signed.image)?;
    let inspection = Inspection::of(&signed.image, Some(&signer.public()))
        .expect("a freshly signed image parses");
    let h = signed.header.header;
    let from = match format {
        InputFormat::Bin => "binary".to_owned(),
        InputFormat::Elf { segments } => format!("ELF, {segments} segment(s)"),
    };
    out.done(
        &Report(&inspection, &args.signed),
        format_args!(
            "signed {} ({from}) as {} image for product {}, version {}: {} bytes at {:#010x}, \
             sha256 {} -> {}",
            args.input.display(),
            h.kind.name(),
            h.product_id,
            h.version,
            h.body_size,
            h.load_addr,
            hex::encode(h.body_digest),
            args.signed.display()
        ),
    );
    Ok(())
}

/// A parsed `0x…` or decimal address.
fn parse_address(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(&hex.replace('_', ""), 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not an address (0x40200 or 262656)"))
}

/// A public key flag: 64 hex chars naming a valid ed25519 key.
fn key_arg(text: &str, what: &str) -> Result<VerifyingKey, Failure> {
    let bytes: [u8; 32] = hex32(text, what)?
        .try_into()
        .expect("hex32 returns 32 bytes");
    sign::public_key(bytes)
        .ok_or_else(|| Failure::usage(format_args!("{what} is not a valid ed25519 public key")))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(format_args!("cannot read {}: {e}", path.display())))
}

fn inspect_file(path: &Path, public: Option<&VerifyingKey>) -> Result<Inspection, Failure> {
    Inspection::of(&read(path)?, public).map_err(|e| {
        Failure::new(
            Exit::Refused,
            format_args!("{} is not a signed flashgate image: {e}", path.display()),
        )
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader
/// (a build step, an upload) never sees half an image.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(
            Exit::Other,
            format_args!("cannot write {}: {e}", path.display()),
        )
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

fn key_failure(error: KeyFileError) -> Failure {
    let code = match error {
        KeyFileError::Exists(_) => Exit::Exists,
        KeyFileError::Io { .. } | KeyFileError::Malformed(_) => Exit::Usage,
        KeyFileError::NotPrivate { .. } => Exit::Refused,
    };
    Failure::new(code, error)
}

fn sign_failure(error: SignError, input: &Path) -> Failure {
    let code = match &error {
        SignError::AnchorsRequired(_) | SignError::AnchorsNotPinned(_) => Exit::Usage,
        SignError::Slot(..)
        | SignError::LoadAddressMismatch { .. }
        | SignError::AnchorsMissing(_)
        | SignError::VendorMismatch { .. }
        | SignError::Signer(SignerError::WrongSignature { .. } | SignerError::BadOutput { .. }) => {
            Exit::Refused
        }
        SignError::Signer(SignerError::TimedOut { .. }) => Exit::Unavailable,
        SignError::Signer(SignerError::Spawn { .. } | SignerError::Failed { .. }) => Exit::Other,
    };
    Failure::new(code, format_args!("{}: {error}", input.display()))
}

/// An inspection with the file it is of, for `-o json`.
struct Report<'a>(&'a Inspection, &'a Path);

fn slot_name(kind: ImageKind) -> String {
    let slot = kind.slot();
    let memory = match slot.storage {
        SlotStorage::Ram => "RAM",
        SlotStorage::Flash | SlotStorage::FlashWithHeader => "flash",
    };
    format!("{} slot ({memory} {:#010x})", kind.name(), slot.base)
}

impl ToJson for Report<'_> {
    fn json(&self) -> Value {
        let Report(i, path) = self;
        let h = i.signed.header;
        let slot = h.kind.slot();
        let anchors = match i.anchors {
            Anchors::NotPinned => Value::Null,
            Anchors::Missing => json!({"present": false, "filled": false}),
            Anchors::Present(a) => json!({"present": true, "filled": a.is_filled(),
                "vendor_public": hex::encode(a.vendor_public),
                "authority_public": hex::encode(a.authority_public)}),
        };
        json!({
            "file": path.display().to_string(),
            "kind": h.kind.name(),
            "product_id": h.product_id,
            "version": h.version,
            "load_address": h.load_addr,
            "body_size": h.body_size,
            "body_digest": hex::encode(h.body_digest),
            "digest_ok": i.digest_ok(),
            "signature": hex::encode(i.signed.signature),
            "signature_checked_with": i.signature.map(|c| hex::encode(c.public)),
            "signature_ok": i.signature.map(|c| c.valid),
            "slot": {"name": h.kind.name(), "base": slot.base, "body_address": slot.body_addr,
                "max_body": slot.max_body, "fits": i.slot.is_ok(),
                "problem": i.slot.as_ref().err().map(ToString::to_string)},
            "trust_anchors": anchors,
            "problems": i.problems(&Expect::default()),
        })
    }
}

fn fields(i: &Inspection, path: &Path) -> Vec<(&'static str, String)> {
    let h = i.signed.header;
    let slot = h.kind.slot();
    let digest = if i.digest_ok() {
        "matches the body".to_owned()
    } else {
        format!(
            "does NOT match the body ({} bytes, sha256 {})",
            i.body_len,
            hex::encode(i.body_digest)
        )
    };
    let signature = match i.signature {
        None => "not checked (give --public-key)".to_owned(),
        Some(c) if c.valid => format!("valid under {}", hex::encode(c.public)),
        Some(c) => format!("does NOT verify under {}", hex::encode(c.public)),
    };
    let fit = match &i.slot {
        Ok(_) => format!(
            "fits: {} of {} bytes at {:#010x}",
            h.body_size, slot.max_body, slot.body_addr
        ),
        Err(problem) => format!("does NOT fit: {problem}"),
    };
    let anchors = match i.anchors {
        Anchors::NotPinned => format!("none ({} images pin no keys)", h.kind.name()),
        Anchors::Missing => "MISSING (no block at body + 0x400)".to_owned(),
        Anchors::Present(a) if !a.is_filled() => "not filled (zero keys)".to_owned(),
        Anchors::Present(a) => format!(
            "vendor {}, authority {}",
            hex::encode(a.vendor_public),
            hex::encode(a.authority_public)
        ),
    };
    vec![
        ("file", path.display().to_string()),
        ("kind", h.kind.name().to_owned()),
        ("product", h.product_id.to_string()),
        ("version", h.version.to_string()),
        ("load address", format!("{:#010x}", h.load_addr)),
        ("body size", format!("{} bytes", h.body_size)),
        (
            "body digest",
            format!("{} ({digest})", hex::encode(h.body_digest)),
        ),
        ("signature", hex::encode(i.signed.signature)),
        ("signature check", signature),
        ("slot", format!("{}: {fit}", slot_name(h.kind))),
        ("trust anchors", anchors),
    ]
}
