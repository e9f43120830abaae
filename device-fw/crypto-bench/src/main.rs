//! Bench firmware for the field-life comparison: what the first sealed data record costs on
//! this core against the public-key work a TLS 1.3 handshake needs at minimum (P-256 key
//! generation, ECDH, one ECDSA verify), with RustCrypto `p256`.
//!
//! Run with `qemu-system-arm -M mps2-an386 -icount shift=0 ... -kernel crypto-bench.elf`
//! (`cargo bench -p flashgate-tests --bench field_life` does). Every operation is timed with
//! SysTick (1 tick = 40 instructions under `-icount shift=0`) and its stack high-water is
//! measured by painting the stack below the caller before the call. The results go out as one
//! UART frame (`MsgType::BenchReport`) of text lines `name ticks stack_bytes`, then the core idles.
//!
//! Inputs are fixed (a deterministic RNG), so every run prints the same numbers. It is built
//! with the RAM flash loader (one `cargo build`, one feature set: `cargo xtask firmware`), so
//! its primitive figures (`loader_primitives`) are those of the loader's code.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use flashgate_board::cpu::SysTickCounter;
use flashgate_board::text::TextBuf;
use flashgate_board::{Board, NorFlash, SerialPort};
use flashgate_protocol::data_stream::{
    epoch_key, CompactHeader, CounterJournal, Direction, RecordKind, RecordSealer, MAX_RECORD_LEN,
};
use flashgate_protocol::layout::{DATA_COUNTER_ADDR, DATA_COUNTER_PAGES, FLASH_PAGE_SIZE};
use flashgate_protocol::uart::{encode_frame, DeviceMessage, OVERHEAD};
use p256::ecdh::EphemeralSecret;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::rand_core::{CryptoRng, Error as RngError, RngCore};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::PublicKey;

flashgate_board::vector_table!();

/// How far below the caller's stack pointer the stack is painted before each measurement.
const PAINT_BYTES: u32 = 48 * 1024;
/// Painted words start this far below the caller's SP (room for `paint`'s own frame).
const PAINT_MARGIN: u32 = 64;
const PAINT: u32 = 0xC0DE_5AFE;

/// A fixed device key and serial (the values do not change the cost).
const DEVICE_KEY: [u8; 32] = [0x42; 32];
const SERIAL: [u8; 16] = *b"FG-BENCH-0000001";

/// A deterministic xorshift "RNG": the bench must print the same numbers every run. Never
/// use this for real keys.
struct FixedRng(u64);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

#[allow(unsafe_code, reason = "reads SP with inline assembly")]
fn stack_pointer() -> u32 {
    let sp: u32;
    // SAFETY: reads SP into a register; no memory access, no side effect.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack)) };
    sp
}

/// Fills `[bottom, top)` (word aligned, below every live frame) with [`PAINT`].
#[allow(unsafe_code, reason = "writes free stack below SP")]
#[inline(never)]
fn paint(bottom: u32, top: u32) {
    let mut at = bottom;
    while at < top {
        // SAFETY: the range lies below the current stack pointer minus a margin that covers
        // this function's frame, inside SRAM, and no interrupt is enabled, so nothing live is
        // there; volatile so the stores are not elided.
        unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// Lowest address in `[bottom, top)` whose word no longer holds [`PAINT`].
#[allow(unsafe_code, reason = "reads free stack below SP")]
#[inline(never)]
fn lowest_touched(bottom: u32, top: u32) -> u32 {
    let mut at = bottom;
    while at < top {
        // SAFETY: as in `paint`: SRAM below the live stack, read only.
        if unsafe { core::ptr::read_volatile(at as *const u32) } != PAINT {
            return at;
        }
        at += 4;
    }
    top
}

/// Runs `f`, timing it with SysTick and measuring its stack high-water by painting.
struct Bench {
    systick: SysTickCounter,
    report: TextBuf<1536>,
}

impl Bench {
    #[inline(never)]
    fn measure<R>(&mut self, name: &str, f: impl FnOnce() -> R) -> R {
        let sp = stack_pointer();
        let top = (sp - PAINT_MARGIN) & !3;
        let bottom = top - PAINT_BYTES;
        paint(bottom, top);
        let start = self.systick.now();
        let r = core::hint::black_box(run(f));
        let ticks = self.systick.ticks_since(start);
        let stack = sp - lowest_touched(bottom, top);
        let _ = writeln!(self.report, "{name} {ticks} {stack}");
        r
    }

    fn note(&mut self, name: &str, value: usize) {
        let _ = writeln!(self.report, "{name} {value} 0");
    }
}

#[inline(never)]
fn run<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The demo OS's first record: journal load + reservation (one 8-byte flash write), key
/// derivation, the boot text, the seal and the UART frame, with the record and frame buffers a
/// data-only device needs (`MAX_RECORD_LEN`, `MAX_RECORD_LEN + OVERHEAD`) on this stack.
/// Returns (record length, frame length).
#[inline(never)]
fn first_record(flash: &mut flashgate_board::mps2_an386::CodeFlash) -> (usize, usize) {
    let Ok(mut journal) = CounterJournal::load(flash, DATA_COUNTER_ADDR) else {
        return (0, 0);
    };
    let state = journal.state();
    let mut sealer = RecordSealer::new(&DEVICE_KEY, &SERIAL, state.epoch, state.mark, state.mark);
    if let Some(due) = sealer.needs_reservation() {
        if journal.reserve(flash, due.epoch, due.mark).is_err() {
            return (0, 0);
        }
        sealer.reserved(due);
    }
    let mut body = TextBuf::<128>::new();
    let _ = write!(body, "boot uptime_ticks={} apps_started={}", 123_456, 0);
    let mut record = [0u8; MAX_RECORD_LEN];
    let Ok(n) = sealer.seal(RecordKind::Telemetry, body.as_bytes(), &mut record) else {
        return (0, 0);
    };
    let mut frame = [0u8; MAX_RECORD_LEN + OVERHEAD];
    let f = encode_frame(&DeviceMessage::DataRecord(&record[..n]), &mut frame).unwrap_or(0);
    core::hint::black_box(&frame);
    (n, f)
}

/// The CertificateVerify content TLS 1.3 signs (RFC 8446 §4.4.3): 64 spaces, the context
/// string, a zero byte and a SHA-256 transcript hash (130 bytes in all).
fn certificate_verify_content() -> [u8; 130] {
    let mut m = [0x20u8; 130];
    let ctx = b"TLS 1.3, server CertificateVerify";
    m[64..64 + ctx.len()].copy_from_slice(ctx);
    m[64 + ctx.len()] = 0;
    for (i, b) in m[98..].iter_mut().enumerate() {
        *b = i as u8;
    }
    m
}

#[allow(unsafe_code, reason = "the runtime's Reset calls `main` by name")]
#[no_mangle]
extern "C" fn main() -> ! {
    let Some(mut board) = Board::take() else {
        flashgate_board::cpu::system_reset()
    };
    let mut bench = Bench {
        systick: SysTickCounter::start(),
        report: TextBuf::new(),
    };
    bench.measure("empty", || 0u32);

    // Data path. The journal pages are erased first (the code memory is plain RAM here).
    let erased = (0..DATA_COUNTER_PAGES).all(|i| {
        board
            .flash
            .erase_page(DATA_COUNTER_ADDR + i * FLASH_PAGE_SIZE)
            .is_ok()
    });
    let flash = &mut board.flash;
    let (record_len, frame_len) = bench.measure("data_first_record", || first_record(flash));
    bench.note("data_journal_erased", usize::from(erased));
    bench.note("data_record_bytes", record_len);
    bench.note("data_frame_bytes", frame_len);
    bench.measure("data_epoch_key_hkdf", || {
        epoch_key(&DEVICE_KEY, Direction::Up, 0)
    });
    let key = epoch_key(&DEVICE_KEY, Direction::Up, 0);
    let header = CompactHeader {
        handle: [0x46; 3],
        epoch_low: 0,
        counter: 64,
        kind: RecordKind::Telemetry,
    };
    let body = [0x61u8; 39];
    let _ = bench.measure("data_seal_39b", || {
        let mut out = [0u8; MAX_RECORD_LEN];
        flashgate_protocol::data_stream::seal_compact(&key, &header, &body, &mut out)
            .map(|n| out[n - 1])
    });

    // The boot checks' cost (`boot::check_identity`: serial = UID, pinned keys, the device
    // certificate's ed25519 verify_strict under the pinned authority key, its binding), on a
    // genuine record. What every reset of the bootloader (and the demo OS start) now pays.
    let (record, anchors) = genuine_record();
    let passed = bench.measure("boot_check_identity", || {
        flashgate_protocol::boot::check_identity(&record, &SERIAL, &anchors).is_ok()
    });
    bench.note("boot_check_identity_ok", usize::from(passed));

    // TLS 1.3 client, minimum public-key work with P-256 (secp256r1 key share, one
    // ecdsa_secp256r1_sha256 CertificateVerify).
    let mut rng = FixedRng(0x9E37_79B9_7F4A_7C15);
    // Key generation: random scalar, fixed-base multiplication, SEC1 encoding of the share.
    let (secret, share) = bench.measure("p256_keygen", || {
        let secret = EphemeralSecret::random(&mut rng);
        let share = secret.public_key().to_encoded_point(false);
        (secret, share)
    });
    // The server's share, made outside the measurement.
    let server = EphemeralSecret::random(&mut rng);
    let server_share = server.public_key().to_encoded_point(false);
    let shared = bench.measure("p256_ecdh", || {
        PublicKey::from_sec1_bytes(server_share.as_bytes())
            .map(|peer| *secret.diffie_hellman(&peer).raw_secret_bytes())
    });
    let agree = server
        .diffie_hellman(
            &PublicKey::from_sec1_bytes(share.as_bytes()).unwrap_or(server.public_key()),
        )
        .raw_secret_bytes()
        .as_slice()
        == shared.as_ref().map_or(&[][..], |s| s.as_slice());
    bench.note("p256_ecdh_agrees", usize::from(agree));

    let content = certificate_verify_content();
    let signing = SigningKey::random(&mut rng);
    let cert_key = signing.verifying_key().to_encoded_point(false);
    let signature: Signature = bench.measure("p256_ecdsa_sign", || signing.sign(&content));
    let ok = bench.measure("p256_ecdsa_verify", || {
        VerifyingKey::from_sec1_bytes(cert_key.as_bytes())
            .and_then(|vk| vk.verify(&content, &signature))
            .is_ok()
    });
    bench.note("p256_ecdsa_verify_ok", usize::from(ok));

    loader_primitives(&mut bench);

    let mut frame = [0u8; 1536 + OVERHEAD];
    if let Ok(n) = encode_frame(
        &DeviceMessage::BenchReport(bench.report.as_bytes()),
        &mut frame,
    ) {
        board.uart.write_all(&frame[..n]);
    }
    loop {
        core::hint::spin_loop();
    }
}

/// The primitives the RAM flash loader is built from, as this build links them: the
/// references `cargo bench -p flashgate-tests --bench foundation` prints beside the loader's
/// handshake and frame costs. Each streaming primitive is timed at two lengths, so the host
/// gets its per-byte slope and fixed cost.
#[inline(never)]
fn loader_primitives(bench: &mut Bench) {
    use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit, Nonce};
    use sha2::{Digest, Sha256};
    use x25519_dalek::{PublicKey, StaticSecret};

    static mut BUF: [u8; PRIMITIVE_LONG] = [0; PRIMITIVE_LONG];
    #[allow(
        unsafe_code,
        reason = "the one use of a static buffer (kept off the stack)"
    )]
    // SAFETY: single-threaded, no interrupts; this is the only reference to BUF.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUF) };
    let aead = ChaCha20Poly1305::new(&[0x11; 32].into());
    for (name, len) in [
        ("aead_seal_short", PRIMITIVE_SHORT),
        ("aead_seal_long", PRIMITIVE_LONG),
    ] {
        let _ = bench.measure(name, || {
            aead.encrypt_in_place_detached(&Nonce::default(), b"FGSF-aad..", &mut buf[..len])
        });
    }
    for (name, len) in [
        ("sha256_short", PRIMITIVE_SHORT),
        ("sha256_long", PRIMITIVE_LONG),
    ] {
        let _ = bench.measure(name, || Sha256::digest(&buf[..len]));
    }
    bench.note("primitive_short_bytes", PRIMITIVE_SHORT);
    bench.note("primitive_long_bytes", PRIMITIVE_LONG);
    let secret = StaticSecret::from([0x77; 32]);
    let public = bench.measure("x25519_keygen", || PublicKey::from(&secret));
    let _ = bench.measure("x25519_keygen_ladder", || {
        x25519_dalek::x25519(secret.to_bytes(), x25519_dalek::X25519_BASEPOINT_BYTES)
    });
    let _ = bench.measure("x25519_dh", || secret.diffie_hellman(&public).to_bytes());
}

const PRIMITIVE_SHORT: usize = 64;
const PRIMITIVE_LONG: usize = 4096;

/// A record of this bench's chip (`SERIAL`) with a certificate of a fixed authority key, and
/// the anchors an image would pin for it.
fn genuine_record() -> (
    flashgate_protocol::device_record::DeviceRecord,
    flashgate_protocol::trust_anchors::TrustAnchors,
) {
    use flashgate_protocol::certificate::{key_commitment, CertificateBody};
    let authority = ed25519_dalek::SigningKey::from_bytes(&[0x31; 32]);
    let anchors = flashgate_protocol::trust_anchors::TrustAnchors {
        vendor_public: [0x22; 32],
        authority_public: authority.verifying_key().to_bytes(),
    };
    let certificate = CertificateBody {
        product_id: 7,
        unique_id: SERIAL,
        key_commitment: key_commitment(&DEVICE_KEY),
        order_ref: [0x0D; 16],
        sequence: 1,
        issued_at_ms: 1,
    }
    .sign(&authority);
    let record = flashgate_protocol::device_record::DeviceRecord {
        config: flashgate_protocol::device_record::DeviceConfig {
            serial: SERIAL,
            product_id: 7,
            vendor_public: anchors.vendor_public,
            authority_public: anchors.authority_public,
            rollback_floor: 1,
            flags: 0,
        },
        device_key: DEVICE_KEY,
        bootloader_version: 1,
        bootloader_size: 0,
        bootloader_digest: [0; 32],
        certificate,
    };
    (record, anchors)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
