//! `flashgate image keygen|sign|verify|inspect`: the vendor's image tool, run as a process on
//! files; its images accepted by a real coordinator's `release upload`; every refusal with its
//! exit code and message, and no output file left behind.

use std::path::{Path, PathBuf};
use std::process::Output;

use flashgate_protocol::image::{sign_image, ImageKind};
use flashgate_protocol::layout::TRUST_ANCHORS_OFFSET;
use flashgate_protocol::trust_anchors::{self, ANCHORS_LEN, PLACEHOLDER};
use serde_json::Value;

use crate::support::{code, flashgate, json, stderr, stdout, World, PRODUCT};

const OS_BODY: u32 = 0x0004_0200;
const BOOTLOADER_BODY: u32 = 0;

/// A body as a linker would emit it for `load`: a vector table whose reset vector points
/// inside, the trust-anchor placeholder at its offset (when `anchors`), code after it.
fn body(load: u32, len: usize, anchors: bool) -> Vec<u8> {
    let mut body = vec![0xA5u8; len];
    body[..4].copy_from_slice(&0x2040_0000u32.to_le_bytes());
    body[4..8].copy_from_slice(&((load + 0x461) | 1).to_le_bytes());
    if anchors {
        let at = TRUST_ANCHORS_OFFSET as usize;
        body[at..at + ANCHORS_LEN].copy_from_slice(&PLACEHOLDER);
    }
    body
}

/// The binary in a directory of its own, with a vendor key made by `image keygen`.
struct Tool {
    dir: tempfile::TempDir,
    vendor_pub: String,
    authority_pub: String,
}

impl Tool {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut tool = Self {
            dir,
            vendor_pub: String::new(),
            authority_pub: String::new(),
        };
        tool.vendor_pub = tool.keygen("vendor.key");
        tool.authority_pub = tool.keygen("authority.key");
        tool
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str, contents: &[u8]) -> String {
        std::fs::write(self.path(name), contents).unwrap();
        self.arg(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        flashgate(self.dir.path(), &[], &args)
    }

    /// `image keygen --out NAME -o json`; returns the public key.
    fn keygen(&self, name: &str) -> String {
        let out = json(&self.run(&["image", "keygen", "--out", &self.arg(name), "-o", "json"]));
        out["public_key"].as_str().unwrap().to_owned()
    }

    /// `image sign` of `input` to `output` with the vendor key and `extra` flags.
    fn sign(&self, input: &str, output: &str, kind: &str, extra: &[&str]) -> Output {
        let key = self.arg("vendor.key");
        let mut args = vec![
            "image",
            "sign",
            "--key",
            &key,
            "--kind",
            kind,
            "--product",
            "7",
            "--version",
            "3",
        ];
        args.extend_from_slice(extra);
        args.extend([input, output]);
        self.run(&args)
    }

    /// The anchor flags for this tool's vendor and authority keys.
    fn anchors(&self) -> [&str; 4] {
        [
            "--vendor-pub",
            &self.vendor_pub,
            "--authority-pub",
            &self.authority_pub,
        ]
    }

    /// A signed OS image of a good body; returns its path.
    fn signed_os(&self, name: &str) -> String {
        let input = self.file(&format!("{name}.bin"), &body(OS_BODY, 4096, true));
        let output = self.arg(name);
        let out = self.sign(&input, &output, "os", &self.anchors());
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        output
    }

    /// `ARGS` must fail with `expected`, one message on stderr containing `says`, nothing on
    /// stdout.
    fn refused(&self, args: &[&str], expected: i32, says: &str) {
        let out = self.run(args);
        assert_refused(&out, expected, says, args);
    }
}

fn assert_refused(out: &Output, expected: i32, says: &str, what: &[&str]) {
    let message = stderr(out);
    assert_eq!(code(out), expected, "{what:?}: {message}");
    assert!(stdout(out).is_empty(), "{what:?}: {}", stdout(out));
    assert!(message.contains(says), "{what:?}: {message}");
    assert!(
        message.starts_with("flashgate: ") || message.starts_with("error: "),
        "{message}"
    );
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_only_its_public_half() {
    let tool = Tool::new();
    let key = tool.arg("k.key");
    let out = tool.run(&["image", "keygen", "--out", &key]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stdout(&out);
    let seed = std::fs::read_to_string(tool.path("k.key")).unwrap();
    assert_eq!(seed.trim().len(), 64);
    assert!(!said.contains(seed.trim()), "the key was printed: {said}");
    let public = said
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("the public key line");
    let seed: [u8; 32] = hex::decode(seed.trim()).unwrap().try_into().unwrap();
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(public, hex::encode(derived.to_bytes()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tool.path("k.key")).unwrap().permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
    }
    // Never overwritten: exists (6), the file unchanged.
    let before = std::fs::read(tool.path("k.key")).unwrap();
    tool.refused(
        &["image", "keygen", "--out", &key],
        6,
        "already exists: a signing key is never overwritten",
    );
    assert_eq!(std::fs::read(tool.path("k.key")).unwrap(), before);
    tool.refused(
        &["image", "keygen", "--out", "/nonexistent/dir/k.key"],
        2,
        "cannot create key file /nonexistent/dir/k.key",
    );
}

#[test]
fn a_signed_image_verifies_inspects_and_its_anchors_are_the_keys_given() {
    let tool = Tool::new();
    let image = tool.signed_os("os.img");
    let bytes = std::fs::read(&image).unwrap();
    let anchors = trust_anchors::read(&bytes[128..]).unwrap();
    assert_eq!(hex::encode(anchors.vendor_public), tool.vendor_pub);
    assert_eq!(hex::encode(anchors.authority_public), tool.authority_pub);

    let ok = tool.run(
        &[
            "image",
            "verify",
            "--public-key",
            &tool.vendor_pub,
            "--kind",
            "os",
        ]
        .into_iter()
        .chain([
            "--product",
            "7",
            "--authority-pub",
            &tool.authority_pub,
            &image,
        ])
        .collect::<Vec<_>>(),
    );
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(
        stdout(&ok).ends_with(
            ": valid os image for product 7, version 3 (signature, digest, slot, trust anchors)\n"
        ),
        "{}",
        stdout(&ok)
    );

    let table = stdout(&tool.run(&["image", "inspect", "--public-key", &tool.vendor_pub, &image]));
    for line in [
        "kind:                os",
        "load address:        0x00040200",
        "body size:           4096 bytes",
        "signature check:     valid under ",
        "slot:                os slot (flash 0x00040000): fits: 4096 of 523776 bytes at 0x00040200",
    ] {
        assert!(table.contains(line), "{line:?} missing:\n{table}");
    }
    assert!(table.contains(&format!(
        "trust anchors:       vendor {}, authority {}",
        tool.vendor_pub, tool.authority_pub
    )));
    let unchecked = stdout(&tool.run(&["image", "inspect", &image]));
    assert!(
        unchecked.contains("not checked (give --public-key)"),
        "{unchecked}"
    );

    let doc: Value = json(&tool.run(&["image", "inspect", "-o", "json", &image]));
    assert_eq!(doc["kind"], "os");
    assert_eq!(doc["load_address"], OS_BODY);
    assert_eq!(doc["digest_ok"], true);
    assert_eq!(doc["signature_ok"], Value::Null);
    assert_eq!(doc["slot"]["fits"], true);
    assert_eq!(doc["trust_anchors"]["filled"], true);
    assert_eq!(doc["problems"], serde_json::json!([]));
}

#[test]
fn sign_refuses_bodies_that_do_not_fit_their_slot() {
    let tool = Tool::new();
    let out_file = tool.arg("out.img");
    let good = tool.file("os.bin", &body(OS_BODY, 4096, true));
    let anchors = tool.anchors();
    let refuse = |input: &str, kind: &str, extra: &[&str], expected: i32, says: &str| {
        let mut flags = anchors.to_vec();
        flags.extend_from_slice(extra);
        let flags = if kind == "app" { extra.to_vec() } else { flags };
        let out = tool.sign(input, &out_file, kind, &flags);
        assert_refused(&out, expected, says, &[input, kind]);
        assert!(
            !tool.path("out.img").exists(),
            "{input} as {kind}: output written"
        );
    };
    // Wrong slot: an explicit load address that is not the OS slot's body.
    refuse(
        &good,
        "os",
        &["--load-address", "0x40000"],
        7,
        "it loads at 0x00040000, but the os slot's body starts at 0x00040200",
    );
    // Wrong kind: the OS body signed as a bootloader is linked for another address.
    refuse(
        &good,
        "bootloader",
        &[],
        7,
        "refusing to sign it as bootloader: it does not start with a vector table linked for 0x00000000",
    );
    // ... and as an app it has no app header.
    refuse(
        &good,
        "app",
        &[],
        7,
        "refusing to sign it as app: it does not start with a valid app header",
    );
    // Oversize.
    let big = tool.file("big.bin", &body(OS_BODY, 0x8_0000, true));
    refuse(
        &big,
        "os",
        &[],
        7,
        "its body is 524288 bytes, more than the os slot's 523776 bytes",
    );
    // No trust-anchor block where the bootloader and the OS carry it.
    let bare = tool.file("bare.bin", &body(OS_BODY, 4096, false));
    refuse(
        &bare,
        "os",
        &[],
        7,
        "it has no trust-anchor block at body + 0x400",
    );
    let bare_bl = tool.file("bare-bl.bin", &body(BOOTLOADER_BODY, 4096, false));
    refuse(
        &bare_bl,
        "bootloader",
        &[],
        7,
        "it has no trust-anchor block at body + 0x400",
    );
    // A pinned vendor key that is not the signing key.
    let out = tool.sign(
        &good,
        &out_file,
        "os",
        &[
            "--vendor-pub",
            &tool.authority_pub,
            "--authority-pub",
            &tool.authority_pub,
        ],
    );
    assert_refused(&out, 7, "is not the signing key's public key", &["vendor"]);
    // Anchors missing from the command line (bootloader, OS), or given for an app: usage.
    let out = tool.sign(&good, &out_file, "os", &[]);
    assert_refused(
        &out,
        2,
        "an os image pins the vendor and authority keys",
        &[],
    );
    let out = tool.sign(&good, &out_file, "os", &["--vendor-pub", &tool.vendor_pub]);
    assert_refused(&out, 2, "--vendor-pub and --authority-pub go together", &[]);
    let app = tool.file("app.bin", &[0u8; 64]);
    let out = tool.sign(&app, &out_file, "app", &anchors);
    assert_refused(&out, 2, "an app image carries no trust anchors", &[]);
    let out = tool.sign(
        &good,
        &out_file,
        "os",
        &["--vendor-pub", "zz", "--authority-pub", "00"],
    );
    assert_refused(&out, 2, "--vendor-pub must be hex", &[]);
    // Not a key: an all-zero "authority key" is no ed25519 key.
    let zero = "00".repeat(32);
    let out = tool.sign(
        &good,
        &out_file,
        "os",
        &["--vendor-pub", &tool.vendor_pub, "--authority-pub", &zero],
    );
    assert_refused(
        &out,
        2,
        "--authority-pub is not a valid ed25519 public key",
        &[],
    );
    // An unreadable input.
    let out = tool.sign("/nonexistent.bin", &out_file, "os", &anchors);
    assert_refused(&out, 2, "cannot read /nonexistent.bin", &[]);
    // An ELF file for another machine.
    let mut elf = b"\x7fELF\x01\x01\x01".to_vec();
    elf.resize(64, 0);
    elf[18] = 62;
    let x86 = tool.file("x86.elf", &elf);
    let out = tool.sign(&x86, &out_file, "os", &anchors);
    assert_refused(&out, 7, "not a 32-bit little-endian Arm ELF file", &[]);
}

#[test]
fn bad_key_files_are_refused_before_anything_is_signed() {
    let tool = Tool::new();
    let input = tool.file("os.bin", &body(OS_BODY, 4096, true));
    let out_file = tool.arg("out.img");
    let anchors = tool.anchors();
    let sign_with = |key: &str| {
        let mut args = vec![
            "image",
            "sign",
            "--key",
            key,
            "--kind",
            "os",
            "--product",
            "7",
            "--version",
            "1",
        ];
        args.extend_from_slice(&anchors);
        args.extend([input.as_str(), out_file.as_str()]);
        tool.run(&args)
    };
    let private = |name: &str, text: &str| {
        let path = tool.file(name, text.as_bytes());
        set_mode(&tool.path(name), 0o600);
        path
    };
    let malformed = private("bad.key", "not a key\n");
    assert_refused(
        &sign_with(&malformed),
        2,
        "bad.key is not a flashgate signing key (64 hex characters",
        &["malformed"],
    );
    let short = private("short.key", &"ab".repeat(31));
    assert_refused(
        &sign_with(&short),
        2,
        "is not a flashgate signing key",
        &["short"],
    );
    assert_refused(
        &sign_with("/nonexistent.key"),
        2,
        "cannot read key file /nonexistent.key",
        &["missing"],
    );
    let open = tool.arg("vendor.key");
    set_mode(&tool.path("vendor.key"), 0o644);
    assert_refused(
        &sign_with(&open),
        7,
        "is readable by other users (mode 644): a signing key must be private (chmod 600",
        &["world-readable"],
    );
    assert!(!tool.path("out.img").exists());
    // --public-key that is not the key file's.
    set_mode(&tool.path("vendor.key"), 0o600);
    let mut args = vec![
        "image",
        "sign",
        "--key",
        &open,
        "--public-key",
        &tool.authority_pub,
    ];
    args.extend(["--kind", "os", "--product", "7", "--version", "1"]);
    args.extend_from_slice(&anchors);
    args.extend([input.as_str(), out_file.as_str()]);
    tool.refused(&args, 7, "--public-key is not the public half of");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn verify_refuses_tampered_foreign_and_unexpected_images() {
    let tool = Tool::new();
    let image = tool.signed_os("os.img");
    let key = tool.vendor_pub.clone();
    let verify = |file: &str, extra: &[&str], says: &str| {
        let mut args = vec!["image", "verify", "--public-key", &key];
        args.extend_from_slice(extra);
        args.push(file);
        tool.refused(&args, 7, says);
    };
    let bytes = std::fs::read(&image).unwrap();
    // One body bit flipped after signing.
    let mut tampered = bytes.clone();
    tampered[128 + 3000] ^= 1;
    let tampered = tool.file("tampered.img", &tampered);
    verify(
        &tampered,
        &[],
        "verification failed: its body does not hash to the signed digest",
    );
    // A header bit flipped: the signature no longer verifies.
    let mut header = bytes.clone();
    header[12] ^= 1;
    let header = tool.file("header.img", &header);
    verify(&header, &[], "its signature does not verify under");
    // Truncated.
    let truncated = tool.file("short.img", &bytes[..bytes.len() - 1]);
    verify(
        &truncated,
        &[],
        "its body is 4095 bytes but its header says 4096",
    );
    // Verified under another key.
    tool.refused(
        &[
            "image",
            "verify",
            "--public-key",
            &tool.authority_pub,
            &image,
        ],
        7,
        "its signature does not verify under",
    );
    // Not what was expected.
    verify(
        &image,
        &["--kind", "bootloader"],
        "it is an os image, not bootloader",
    );
    verify(&image, &["--product", "8"], "it is for product 7, not 8");
    verify(
        &image,
        &["--authority-pub", &tool.vendor_pub],
        "it pins authority key",
    );
    // Signed by other tooling without filling the anchors.
    let vendor = flashgate_cli::image_tool::key_file::load(&tool.path("vendor.key")).unwrap();
    for (anchors, name, says) in [
        (
            true,
            "unfilled.img",
            "its trust anchors are not filled (zero keys)",
        ),
        (
            false,
            "missing.img",
            "it has no trust-anchor block at body + 0x400",
        ),
    ] {
        let image = sign_image(
            ImageKind::Os,
            7,
            3,
            OS_BODY,
            &body(OS_BODY, 4096, anchors),
            &vendor,
        );
        verify(&tool.file(name, &image), &[], says);
    }
    // Not an image at all; not there.
    let junk = tool.file("junk.img", b"hello");
    verify(&junk, &[], "junk.img is not a signed flashgate image");
    tool.refused(
        &["image", "verify", "--public-key", &key, "/nonexistent.img"],
        2,
        "cannot read /nonexistent.img",
    );
    // inspect shows what is wrong without refusing.
    let doc = json(&tool.run(&["image", "inspect", "-o", "json", &tampered]));
    assert_eq!(doc["digest_ok"], false);
    let table = stdout(&tool.run(&["image", "inspect", &tool.arg("missing.img")]));
    assert!(table.contains("trust anchors:       MISSING"), "{table}");
}

/// `sh` script that signs with `key` (an ed25519 PEM) through openssl: an independent ed25519
/// implementation standing in for an HSM or KMS, as in docs/firmware-guide.md.
const OPENSSL_SIGNER: &str = "#!/bin/sh
set -e
msg=$(mktemp)
trap 'rm -f \"$msg\"' EXIT
cat > \"$msg\"
openssl pkeyutl -sign -inkey \"$1\" -rawin -in \"$msg\" | od -An -v -tx1 | tr -d ' \\n'
";

#[test]
fn an_external_signer_signs_and_is_checked_before_anything_is_written() {
    let tool = Tool::new();
    let pem = tool.path("hsm.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&pem)
        .output()
        .expect("openssl is installed (scripts/setup.sh)");
    assert!(made.status.success());
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .unwrap()
        .stdout;
    let hsm_pub = hex::encode(&der[der.len() - 32..]);
    let script = tool.file("sign.sh", OPENSSL_SIGNER.as_bytes());
    set_mode(&tool.path("sign.sh"), 0o755);
    let input = tool.file("os.bin", &body(OS_BODY, 4096, true));
    let output = tool.arg("os.img");
    let sign = |command: &str, public: &str| {
        let mut args = vec![
            "image",
            "sign",
            "--signer-cmd",
            command,
            "--public-key",
            public,
        ];
        args.extend(["--kind", "os", "--product", "7", "--version", "2"]);
        args.extend([
            "--vendor-pub",
            public,
            "--authority-pub",
            &tool.authority_pub,
        ]);
        args.extend([input.as_str(), output.as_str()]);
        tool.run(&args)
    };
    let command = format!("{script} {}", pem.display());
    let out = sign(&command, &hsm_pub);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ok = tool.run(&["image", "verify", "--public-key", &hsm_pub, &output]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    std::fs::remove_file(tool.path("os.img")).unwrap();

    // The HSM signs with another key than the one the image is meant for.
    let out = sign(&command, &tool.vendor_pub);
    assert_refused(&out, 7, "does not verify under public key", &["wrong key"]);
    // The signer fails (its stderr reaches the user).
    let out = sign("echo 'hsm: PIN locked' >&2; exit 3", &hsm_pub);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("hsm: PIN locked"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the signer command `echo 'hsm: PIN locked' >&2; exit 3` failed (exit status: 3); nothing was written"),
        "{}",
        stderr(&out)
    );
    // The signer answers garbage, or nothing.
    let out = sign("cat >/dev/null; echo 1234", &hsm_pub);
    assert_refused(
        &out,
        7,
        "printed 4 characters, not a 64-byte signature",
        &["garbage"],
    );
    let out = sign("true", &hsm_pub);
    assert_refused(&out, 7, "printed nothing", &["nothing"]);
    // A well-formed signature of something else.
    let other = "ab".repeat(64);
    let out = sign(&format!("echo {other}"), &hsm_pub);
    assert_refused(&out, 7, "does not verify under public key", &["forged"]);
    assert!(
        !tool.path("os.img").exists(),
        "a refused signature wrote the output"
    );
    // --signer-cmd needs the public key to check against.
    tool.refused(
        &[
            "image",
            "sign",
            "--signer-cmd",
            "true",
            "--kind",
            "app",
            "--product",
            "7",
        ]
        .into_iter()
        .chain(["--version", "1", &input, &output])
        .collect::<Vec<_>>(),
        2,
        "--public-key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_it_signs_are_accepted_by_release_upload() {
    let w = World::start().await;
    let mut tool = Tool::new();
    // An OS pinning an authority key the product never had (the tool's own) is refused.
    let foreign = tool.signed_os("foreign-authority.img");
    // The product's vendor key is the one `image keygen` made; its authority key is the
    // coordinator's, printed by `product create`.
    let product = w
        .cli
        .json(&[
            "product",
            "create",
            "--id",
            &PRODUCT.to_string(),
            "--name",
            "board",
            "--vendor-key",
            &tool.vendor_pub,
        ])
        .await;
    let refused = w.cli.fails(&["release", "upload", &foreign], 7).await;
    assert!(refused.contains("never had"), "{refused}");
    tool.authority_pub = product["authority_public_key"].as_str().unwrap().to_owned();
    let os = tool.signed_os("os.img");
    let bl_body = tool.file("bl.bin", &body(BOOTLOADER_BODY, 8192, true));
    let bl = tool.arg("bl.img");
    let out = tool.sign(&bl_body, &bl, "bootloader", &tool.anchors());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let app = tool.arg("app.img");
    let app_body = app_body();
    let app_input = tool.file("app.bin", &app_body);
    let out = tool.sign(&app_input, &app, "app", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    for (file, kind) in [(&os, "os"), (&bl, "bootloader"), (&app, "app")] {
        let release = w.cli.json(&["release", "upload", file]).await;
        assert_eq!(release["kind"], kind);
        assert_eq!(release["product_id"], PRODUCT);
        assert_eq!(release["version"], 3);
    }
    assert_eq!(release_count(&w).await, 3);
    // A tampered copy is refused by the coordinator too.
    let mut tampered = std::fs::read(&os).unwrap();
    tampered[128 + 100] ^= 1;
    let tampered = tool.file("tampered.img", &tampered);
    w.cli.fails(&["release", "upload", &tampered], 7).await;
    assert_eq!(release_count(&w).await, 3);
    w.tc.stop().await;
}

async fn release_count(w: &World) -> usize {
    w.cli
        .json(&["release", "list"])
        .await
        .as_array()
        .unwrap()
        .len()
}

/// An app body: its header (`"FGAP"`, ABI 1, entry inside the body), then code.
fn app_body() -> Vec<u8> {
    let entry = flashgate_protocol::app::APP_BODY_ADDR + 0x11;
    let mut body = Vec::new();
    for word in [flashgate_protocol::app::APP_MAGIC, 1, entry, 0] {
        body.extend_from_slice(&word.to_le_bytes());
    }
    body.resize(256, 0x70);
    body
}
