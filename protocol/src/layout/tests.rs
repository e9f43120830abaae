//! Both maps keep the rules the programs and the state machines rely on.

/// Checks one memory map module (they all define the same names).
macro_rules! check_map {
    ($map:ident) => {{
        use super::$map::*;
        let name = stringify!($map);
        let flash_end = FLASH_BASE + FLASH_SIZE;
        let pages = [
            ("device record", DEVICE_RECORD_ADDR, FLASH_PAGE_SIZE),
            ("debug lock", DEBUG_LOCK_ADDR, FLASH_PAGE_SIZE),
            (
                "boot state",
                BOOT_STATE_ADDR,
                BOOT_STATE_PAGES * FLASH_PAGE_SIZE,
            ),
            (
                "data counters",
                DATA_COUNTER_ADDR,
                DATA_COUNTER_PAGES * FLASH_PAGE_SIZE,
            ),
            (
                "app floor",
                APP_FLOOR_ADDR,
                APP_FLOOR_PAGES * FLASH_PAGE_SIZE,
            ),
            (
                "down window",
                DOWN_WINDOW_ADDR,
                DOWN_WINDOW_PAGES * FLASH_PAGE_SIZE,
            ),
        ];
        let slots = [
            ("OS slot", OS_SLOT_ADDR, OS_SLOT_SIZE),
            ("staging slot", STAGING_SLOT_ADDR, STAGING_SLOT_SIZE),
            ("backup slot", BACKUP_SLOT_ADDR, BACKUP_SLOT_SIZE),
            ("app slot", APP_SLOT_ADDR, APP_SLOT_SIZE),
            ("app staging slot", APP_STAGING_ADDR, APP_STAGING_SIZE),
        ];
        let bootloader = [("bootloader", BOOTLOADER_BASE, BOOTLOADER_MAX)];
        let mut regions = [("", 0u32, 0u32); 12];
        for (slot, region) in regions
            .iter_mut()
            .zip(bootloader.iter().chain(&pages).chain(&slots))
        {
            *slot = *region;
        }
        for (what, at, len) in &regions {
            assert_eq!(
                at % FLASH_PAGE_SIZE,
                0,
                "{name}: {what} is not page aligned"
            );
            assert_eq!(
                len % FLASH_PAGE_SIZE,
                0,
                "{name}: {what} is not whole pages"
            );
            assert!(
                *at >= FLASH_BASE && at + len <= flash_end,
                "{name}: {what} outside flash"
            );
        }
        for (i, (a, a_at, a_len)) in regions.iter().enumerate() {
            for (b, b_at, b_len) in &regions[i + 1..] {
                assert!(
                    a_at + a_len <= *b_at || b_at + b_len <= *a_at,
                    "{name}: {a} overlaps {b}"
                );
            }
        }
        // The swap with revert moves a whole OS slot through staging and backup.
        assert_eq!(
            STAGING_SLOT_SIZE, OS_SLOT_SIZE,
            "{name}: staging != OS slot"
        );
        assert_eq!(BACKUP_SLOT_SIZE, OS_SLOT_SIZE, "{name}: backup != OS slot");
        // VTOR: an image's vector table (after the header space) must be 256-byte aligned.
        for (what, at, _) in slots {
            assert_eq!(
                (at + IMAGE_HEADER_SPACE) % 256,
                0,
                "{name}: {what} body for VTOR"
            );
        }
        assert!(TRUST_ANCHORS_OFFSET + 80 <= OS_SLOT_SIZE - IMAGE_HEADER_SPACE);
        // The loader's whole footprint (image, RAM, stack, params, mailbox) is in SRAM and
        // ends before the test app's area; the app's RAM is outside the OS's.
        assert!(LOADER_BASE >= SRAM_BASE, "{name}: loader below SRAM");
        assert!(
            LOADER_BASE + LOADER_MAX <= LOADER_RAM,
            "{name}: loader image over its RAM"
        );
        assert!(LOADER_STACK_TOP <= PARAMS_ADDR && PARAMS_ADDR < MAILBOX_ADDR);
        assert!(
            MAILBOX_ADDR < LOADER_BASE + LOADER_FOOTPRINT,
            "{name}: mailbox outside footprint"
        );
        assert!(
            LOADER_BASE + LOADER_FOOTPRINT <= TEST_APP_ADDR,
            "{name}: test app over loader"
        );
        let sram_end = SRAM_BASE + SRAM_SIZE;
        assert!(
            APP_RAM_ADDR >= sram_end || APP_RAM_ADDR + APP_RAM_SIZE <= SRAM_BASE,
            "{name}: app RAM inside the OS's RAM"
        );
        assert!(
            !(SRAM_BASE..sram_end).contains(&UPDATE_REQUEST_ADDR)
                && !(APP_RAM_ADDR..APP_RAM_ADDR + APP_RAM_SIZE).contains(&UPDATE_REQUEST_ADDR),
            "{name}: the update-request word is in a program's RAM"
        );
        assert_eq!(UNIQUE_ID_LEN, crate::SERIAL_LEN);
    }};
}

#[test]
fn emulated_board_map_is_consistent() {
    check_map!(mps2_an386);
}

#[test]
fn nrf52840_map_is_consistent_and_fits_the_chip() {
    check_map!(nrf52840);
    use super::nrf52840::*;
    // nRF52840: 1 MiB flash, 256 KiB RAM at 0x2000_0000.
    assert_eq!(FLASH_BASE + FLASH_SIZE, 0x0010_0000);
    const {
        assert!(APP_RAM_ADDR + APP_RAM_SIZE <= 0x2004_0000);
        assert!(UPDATE_REQUEST_ADDR + 4 <= 0x2004_0000);
        assert!(TEST_APP_ADDR + TEST_APP_MAX <= APP_RAM_ADDR);
    }
}
