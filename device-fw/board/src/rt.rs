//! The minimal runtime every flashgate program links with: reset routine, memory
//! initialisation, fault handlers and the symbols of `link.x`.
//!
//! Why not cortex-m-rt: two of flashgate's four programs are not started through a vector
//! table. The RAM loader is entered by the station (SP and PC set over the debug port, a
//! header instead of a vector table at its base) and the test app is *called* by the loader and
//! must return to it. cortex-m-rt's `link.x` puts its vector table at `ORIGIN(FLASH)`, owns the
//! entry symbol and offers no "initialise RAM, then return" routine. What flashgate needs is
//! small (one copy loop, one zero loop, a handful of vectors), so it lives here, written in
//! assembly so that no Rust code runs before `.data` and `.bss` are valid.
//!
//! Entry points defined here:
//! - `Reset`: `__fg_init_memory`, then the program's `main` (`extern "C" fn main() -> !`).
//!   It is the vector-table reset handler *and* the loader's entry in its header.
//! - `__fg_init_memory`: copies `.data` from its load address and zeroes `.bss`, then returns
//!   (AAPCS: uses r0-r3 only), for entry trampolines such as the test app's.
//! - `HardFault`, `DefaultHandler`: spin forever, so a debugger (or the station, which sees the
//!   loader stop answering) finds the core parked at a known address.
#![allow(
    unsafe_code,
    reason = "reset and vectors in assembly; link.x symbols read as memory"
)]

core::arch::global_asm!(
    ".syntax unified",
    ".section .text.Reset, \"ax\", %progbits",
    ".global Reset",
    ".type Reset, %function",
    ".thumb_func",
    "Reset:",
    "    bl __fg_init_memory",
    "    bl main",
    // `main` never returns; if it did, stop here rather than run into whatever follows.
    "1:  b 1b",
    ".size Reset, . - Reset",
    "",
    ".section .text.__fg_init_memory, \"ax\", %progbits",
    ".global __fg_init_memory",
    ".type __fg_init_memory, %function",
    ".thumb_func",
    "__fg_init_memory:",
    "    ldr r0, =__sdata",
    "    ldr r1, =__edata",
    "    ldr r2, =__sidata",
    "2:  cmp r0, r1",
    "    bhs 3f",
    "    ldr r3, [r2], #4",
    "    str r3, [r0], #4",
    "    b 2b",
    "3:  ldr r0, =__sbss",
    "    ldr r1, =__ebss",
    "    movs r2, #0",
    "4:  cmp r0, r1",
    "    bhs 5f",
    "    str r2, [r0], #4",
    "    b 4b",
    "5:  dsb",
    "    isb",
    "    bx lr",
    ".ltorg",
    ".size __fg_init_memory, . - __fg_init_memory",
    "",
    ".section .text.HardFault, \"ax\", %progbits",
    ".global HardFault",
    ".type HardFault, %function",
    ".thumb_func",
    "HardFault:",
    "    b HardFault",
    ".size HardFault, . - HardFault",
    "",
    ".section .text.DefaultHandler, \"ax\", %progbits",
    ".global DefaultHandler",
    ".type DefaultHandler, %function",
    ".thumb_func",
    "DefaultHandler:",
    "    b DefaultHandler",
    ".size DefaultHandler, . - DefaultHandler",
);

/// Emits the program's exception vector table into `.vector_table` (placed by `link.x`).
///
/// Programs started through a vector table (bootloader, demo OS) need it at their base; the RAM
/// loader has one too, right after its header, and points VTOR at it on entry so that a fault
/// inside the loader ends in its own `HardFault` loop instead of in whatever vectors sit at 0x0.
/// Word 0 is `__stack_top` from the program's `memory.x`, word 1 the runtime's `Reset`.
#[macro_export]
macro_rules! vector_table {
    () => {
        ::core::arch::global_asm!(
            ".section .vector_table, \"a\", %progbits",
            ".p2align 2",
            ".word __stack_top",
            ".word Reset",
            ".word DefaultHandler", // NMI
            ".word HardFault",
            ".word DefaultHandler", // MemManage
            ".word DefaultHandler", // BusFault
            ".word DefaultHandler", // UsageFault
            ".word 0, 0, 0, 0",     // reserved
            ".word DefaultHandler", // SVCall
            ".word DefaultHandler", // DebugMonitor
            ".word 0",              // reserved
            ".word DefaultHandler", // PendSV
            ".word DefaultHandler", // SysTick
            // External interrupts (32 on the mps2 boards); none is enabled by flashgate.
            ".rept 32",
            ".word DefaultHandler",
            ".endr",
        );
    };
}

/// Places this program's trust-anchor block ([`flashgate_protocol::trust_anchors`]) in
/// `.trust_anchors`, which `link.x` puts at `layout::TRUST_ANCHORS_OFFSET` into the image when
/// the program's `memory.x` sets `__trust_anchors_offset` (bootloader, demo OS). It is linked
/// as the placeholder (zero keys); `flashgate image sign` fills it before signing. Read it with
/// [`trust_anchors`], never through the static: the compiler would fold its zero keys.
#[macro_export]
macro_rules! trust_anchors {
    () => {
        #[link_section = ".trust_anchors"]
        #[used]
        static __FG_TRUST_ANCHORS: [u8; $crate::rt::TRUST_ANCHORS_LEN] =
            $crate::rt::TRUST_ANCHORS_PLACEHOLDER;
    };
}

#[doc(hidden)]
pub use flashgate_protocol::trust_anchors::{
    ANCHORS_LEN as TRUST_ANCHORS_LEN, PLACEHOLDER as TRUST_ANCHORS_PLACEHOLDER,
};

/// The trust anchors this program's signed image carries (what the signing tool embedded),
/// read with volatile reads from the block [`trust_anchors!`] placed. An error for a program
/// without the block; zero keys ([`TrustAnchors::is_filled`] false) for an unsigned build.
///
/// [`TrustAnchors::is_filled`]: flashgate_protocol::trust_anchors::TrustAnchors::is_filled
pub fn trust_anchors(
) -> Result<flashgate_protocol::trust_anchors::TrustAnchors, flashgate_protocol::ErrorCode> {
    use flashgate_protocol::codec::Codec;
    let start = core::ptr::addr_of!(__trust_anchors);
    let end = core::ptr::addr_of!(__etrust_anchors) as usize;
    if end - start as usize != TRUST_ANCHORS_LEN {
        return Err(flashgate_protocol::ErrorCode::NoTrustAnchors);
    }
    let mut block = [0u8; TRUST_ANCHORS_LEN];
    for (i, byte) in block.iter_mut().enumerate() {
        // SAFETY: `link.x` places the 80-byte block at `__trust_anchors` inside the loaded
        // image (checked just above); the image is never written while it runs.
        *byte = unsafe { core::ptr::read_volatile(start.add(i)) };
    }
    flashgate_protocol::trust_anchors::TrustAnchors::read_bytes(&block)
}

extern "C" {
    static __ebss: u8;
    static __trust_anchors: u8;
    static __etrust_anchors: u8;
    static __image_start: u8;
    static __image_end: u8;
    static __vector_table: u8;
    static __stack_top: u8;
}

/// Address of the first byte of this program's image (its header or vector table).
pub fn image_start() -> u32 {
    // Only the address of the linker-defined symbol is taken, never its contents.
    core::ptr::addr_of!(__image_start) as u32
}

/// Address one past the last loaded byte of this program's image (end of `.data`'s load image).
pub fn image_end() -> u32 {
    // Only the address of the linker-defined symbol is taken, never its contents.
    core::ptr::addr_of!(__image_end) as u32
}

/// This program's image as bytes, `[image_start, image_end)`: what the station wrote.
///
/// For RAM-resident programs (loader, test app). Panics for an image at address 0 (the
/// bootloader): a Rust slice may not start at the null address; read such memory through
/// the flash driver instead.
pub fn image() -> &'static [u8] {
    let start = image_start();
    assert!(
        start != 0,
        "an image at address 0 cannot be borrowed as a slice"
    );
    let len = image_end() - start;
    // SAFETY: the linker script places the loaded image (header/vectors, .text, .rodata and the
    // load image of .data) in this range; nothing writes to it while the program runs.
    unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) }
}

/// Address of this program's vector table (for VTOR), if it has one.
pub fn vector_table() -> u32 {
    // Only the address of the linker-defined symbol is taken, never its contents.
    core::ptr::addr_of!(__vector_table) as u32
}

/// End of `.bss` (the stack's lowest possible extent).
pub fn bss_end() -> u32 {
    // Only the address of the linker-defined symbol is taken, never its contents.
    core::ptr::addr_of!(__ebss) as u32
}

/// The initial stack pointer from `memory.x`.
pub fn stack_top() -> u32 {
    // Only the address of the linker-defined symbol is taken, never its contents.
    core::ptr::addr_of!(__stack_top) as u32
}
