//! Which probe-rs register id each word of [`CoreRegisters`] is.
//!
//! On Cortex-M, probe-rs numbers core registers by the DCRSR `REGSEL` field (ARMv7-M ARM C1.6.3):
//! r0–r12 are 0–12, sp 13, lr 14, pc 15, xPSR 0b1_0000. The named ones are taken from probe-rs's
//! own Cortex-M register table so a renumbering there cannot go unnoticed.

use ::probe_rs::{architecture::arm::core::registers::cortex_m, RegisterId};

use crate::probe::CoreRegisters;

/// probe-rs register ids in [`CoreRegisters::to_words`] order: r0–r12, sp, lr, pc, xPSR.
pub(crate) const CORE_REGISTER_IDS: [RegisterId; CoreRegisters::WORDS] = [
    RegisterId(0),
    RegisterId(1),
    RegisterId(2),
    RegisterId(3),
    RegisterId(4),
    RegisterId(5),
    RegisterId(6),
    RegisterId(7),
    RegisterId(8),
    RegisterId(9),
    RegisterId(10),
    RegisterId(11),
    RegisterId(12),
    cortex_m::SP.id,
    cortex_m::RA.id,
    cortex_m::PC.id,
    cortex_m::XPSR.id,
];

/// Names of the words, for error messages (`reading register xpsr`).
pub(crate) const CORE_REGISTER_NAMES: [&str; CoreRegisters::WORDS] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp", "lr",
    "pc", "xpsr",
];
