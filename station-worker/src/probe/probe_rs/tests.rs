//! What runs without a probe: listing, selectors, chip lookup, the register table, error mapping.
//! Nothing here touches a real target.

use std::collections::HashSet;

use ::probe_rs::{
    architecture::arm::{core::registers::cortex_m, ArmError, DapError},
    config::Registry,
    probe::DebugProbeError,
    RegisterRole,
};

use super::{
    breakpoint_address, classify, find_cortex_m_target, halt_reason,
    registers::{CORE_REGISTER_IDS, CORE_REGISTER_NAMES},
    Failure, LinkContext, ProbeListing, ProbeRsProbe, ProbeSelector, DEFAULT_TIMEOUT, SIGSEGV,
};
use crate::probe::{CoreRegisters, HaltReason, ProbeError};

/// A selector no real probe has (pid.codes test VID/PID).
const NOBODY: &str = "1209:0001:flashgate-no-such-probe";

#[test]
fn list_probes_returns_without_panicking() {
    // No probe on the build machine; the point is that enumeration (or its absence) is handled.
    for probe in super::list_probes() {
        assert!(!probe.identifier.is_empty());
        let _ = probe.to_string();
    }
}

#[test]
fn open_with_a_selector_matching_nothing_says_no_probe() {
    let err = ProbeRsProbe::open(Some(NOBODY), "STM32F103C8", Some(4000)).unwrap_err();
    match &err {
        ProbeError::NoProbeFound { selector } => assert_eq!(selector, NOBODY),
        other => panic!("expected NoProbeFound, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("no debug probe matches 1209:0001:flashgate-no-such-probe"),
        "{text}"
    );
    assert!(text.contains("udev"), "{text}");
    assert!(!err.is_link_lost());
}

#[test]
fn open_with_an_unknown_chip_says_so_before_any_usb_access() {
    let err = ProbeRsProbe::open(Some(NOBODY), "NoSuchChip9000", None).unwrap_err();
    match &err {
        ProbeError::UnknownChip { chip, .. } => assert_eq!(chip, "NoSuchChip9000"),
        other => panic!("expected UnknownChip, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("unknown chip \"NoSuchChip9000\""), "{text}");
    assert!(text.contains("probe-rs chip list"), "{text}");
}

#[test]
fn open_with_a_bad_selector_says_so_first() {
    let err = ProbeRsProbe::open(Some("st-link"), "NoSuchChip9000", None).unwrap_err();
    assert!(
        matches!(err, ProbeError::InvalidProbeSelector { .. }),
        "{err:?}"
    );
}

#[test]
fn known_cortex_m_chips_are_found() {
    let registry = Registry::from_builtin_families();
    for chip in ["STM32F103C8", "nRF52840_xxAA", "RP2040", "LM3S6965"] {
        let target = find_cortex_m_target(&registry, chip).unwrap();
        assert!(
            target.name.eq_ignore_ascii_case(chip),
            "{chip} → {}",
            target.name
        );
    }
}

#[test]
fn a_risc_v_chip_is_refused_as_not_cortex_m() {
    let registry = Registry::from_builtin_families();
    let err = find_cortex_m_target(&registry, "GD32VF103CBT6").unwrap_err();
    match &err {
        ProbeError::UnsupportedChip { chip, core } => {
            assert_eq!(chip, "GD32VF103CBT6");
            assert_eq!(core, "Riscv");
        }
        other => panic!("expected UnsupportedChip, got {other:?}"),
    }
    assert!(err.to_string().contains("Cortex-M cores only"), "{err}");
}

#[test]
fn register_table_is_complete_and_distinct() {
    assert_eq!(CORE_REGISTER_IDS.len(), CoreRegisters::WORDS);
    assert_eq!(CORE_REGISTER_NAMES.len(), CoreRegisters::WORDS);
    let ids: HashSet<_> = CORE_REGISTER_IDS.iter().collect();
    assert_eq!(ids.len(), CoreRegisters::WORDS, "duplicate register id");
    let names: HashSet<_> = CORE_REGISTER_NAMES.iter().collect();
    assert_eq!(names.len(), CoreRegisters::WORDS, "duplicate register name");
}

#[test]
fn register_table_matches_probe_rs_cortex_m_registers() {
    let known = &*cortex_m::CORTEX_M_CORE_REGISTERS;
    let by_id = |index: usize| {
        known
            .core_registers()
            .find(|reg| reg.id() == CORE_REGISTER_IDS[index])
            .unwrap_or_else(|| panic!("{} has no probe-rs register", CORE_REGISTER_NAMES[index]))
    };
    for n in 0..13 {
        assert_eq!(by_id(n).name(), format!("R{n}"));
    }
    assert!(by_id(13).register_has_role(RegisterRole::StackPointer));
    assert!(by_id(14).register_has_role(RegisterRole::ReturnAddress));
    assert!(by_id(15).register_has_role(RegisterRole::ProgramCounter));
    assert!(by_id(16).register_has_role(RegisterRole::ProcessorStatus));
    assert_eq!(known.psr().map(|reg| reg.id()), Some(CORE_REGISTER_IDS[16]));
    assert_eq!(known.pc().map(|reg| reg.id()), Some(CORE_REGISTER_IDS[15]));
    // The DCRSR REGSEL numbers, for whoever reads a probe trace.
    let raw: Vec<u16> = CORE_REGISTER_IDS.iter().map(|id| id.0).collect();
    assert_eq!(
        raw,
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    );
}

#[test]
fn selector_converts_to_probe_rs_selector() {
    let selector: ProbeSelector = "1366:0105:000123456789".parse().unwrap();
    let converted = ::probe_rs::probe::DebugProbeSelector::from(&selector);
    assert_eq!(converted.vendor_id, 0x1366);
    assert_eq!(converted.product_id, 0x0105);
    assert_eq!(converted.interface, None);
    assert_eq!(converted.serial_number.as_deref(), Some("000123456789"));
    // probe-rs's own parser reads our text form the same way.
    let parsed: ::probe_rs::probe::DebugProbeSelector = selector.to_string().parse().unwrap();
    assert_eq!(parsed, converted);
}

#[test]
fn listing_shows_its_selector_and_missing_permissions() {
    let listing = ProbeListing {
        identifier: "STLink V2".into(),
        vid: 0x0483,
        pid: 0x3748,
        serial: Some("ABC".into()),
        accessible: false,
    };
    assert_eq!(listing.selector().to_string(), "0483:3748:ABC");
    let text = listing.to_string();
    assert!(text.starts_with("STLink V2 (0483:3748:ABC)"), "{text}");
    assert!(text.contains("udev"), "{text}");
}

#[test]
fn halt_reasons_map_to_gdb_terms() {
    use ::probe_rs::{BreakpointCause, HaltReason as Why};
    assert_eq!(
        halt_reason(Why::Breakpoint(BreakpointCause::Hardware)),
        HaltReason::Trap
    );
    assert_eq!(halt_reason(Why::Step), HaltReason::Trap);
    assert_eq!(halt_reason(Why::Request), HaltReason::Interrupted);
    assert_eq!(halt_reason(Why::Unknown), HaltReason::Interrupted);
    assert_eq!(halt_reason(Why::Exception), HaltReason::Signal(SIGSEGV));
}

#[test]
fn breakpoints_drop_the_thumb_bit() {
    assert_eq!(breakpoint_address(0x0800_0101), 0x0800_0100);
    assert_eq!(breakpoint_address(0x0800_0100), 0x0800_0100);
}

#[test]
fn probe_rs_errors_map_to_actionable_probe_errors() {
    use ::probe_rs::Error;
    let link = LinkContext {
        probe: "STLink V2 (0483:3748)".into(),
        timeout: DEFAULT_TIMEOUT,
    };

    assert_eq!(classify(&Error::Timeout), Failure::Timeout);
    let halt = link.fail("halting the core", Some("halt"), Error::Timeout);
    assert!(matches!(halt, ProbeError::TargetTimeout { .. }), "{halt:?}");
    assert_eq!(
        halt.to_string(),
        "target did not halt within 500ms — check power and the SWD wiring"
    );
    // A timeout of an operation that does not wait for the target is probe-rs's own.
    let read = link.fail("reading 4 bytes at 0x20000000", None, Error::Timeout);
    assert!(matches!(read, ProbeError::DebugLink { .. }), "{read:?}");

    let running = link.fail(
        "reading register r0",
        None,
        Error::Arm(ArmError::CoreNotHalted),
    );
    assert!(
        matches!(running, ProbeError::TargetRunning { .. }),
        "{running:?}"
    );

    let nested_timeout = Error::Arm(ArmError::Probe(DebugProbeError::Timeout));
    assert_eq!(classify(&nested_timeout), Failure::Timeout);

    let fault = Error::Arm(ArmError::Dap(DapError::FaultResponse));
    let refused = link.fail("reading 4 bytes at 0xf0000000", None, fault);
    assert!(
        matches!(refused, ProbeError::TargetRefused { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("mapped"), "{refused}");

    let unplugged = Error::Probe(DebugProbeError::Usb(std::io::Error::other("device gone")));
    let lost = link.fail("resuming the core", None, unplugged);
    assert!(
        matches!(lost, ProbeError::ProbeDisconnected { .. }),
        "{lost:?}"
    );
    assert!(lost.is_link_lost());
    assert!(lost.to_string().contains("STLink V2 (0483:3748)"), "{lost}");
    assert!(lost.to_string().contains("device gone"), "{lost}");

    let other = link.fail(
        "setting a hardware breakpoint",
        None,
        Error::Other("no units".into()),
    );
    assert!(matches!(other, ProbeError::DebugLink { .. }), "{other:?}");
    assert!(other.to_string().contains("no units"), "{other}");
}

#[test]
fn probe_is_send_for_boxed_probes() {
    fn assert_send<T: Send>() {}
    assert_send::<ProbeRsProbe>();
}
