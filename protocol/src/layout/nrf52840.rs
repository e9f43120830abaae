//! Nordic nRF52840 (Cortex-M4F, 1 MiB flash in 4 KiB pages at 0x0, 256 KiB RAM at
//! 0x2000_0000), the first real-silicon port (see `device-fw/README.md`, "Ports").
//!
//! The same regions as the emulated board, packed into 1 MiB: the bootloader and the record
//! pages in the first 128 KiB, then three equal 256 KiB slots (OS, staging, backup: the swap
//! with revert needs all three), a 64 KiB app slot and its 64 KiB staging slot. The RAM flash loader keeps the
//! emulated board's addresses: its 64 KiB footprint at the start of RAM fits this chip as is.

/// Erase granularity of the nRF52840's NVMC (a page is 4 KiB).
pub const FLASH_PAGE_SIZE: u32 = 4096;
/// On-chip flash.
pub const FLASH_BASE: u32 = 0x0000_0000;
pub const FLASH_SIZE: u32 = 0x0010_0000;

/// The secure bootloader: vector table at the reset address.
pub const BOOTLOADER_BASE: u32 = 0x0000_0000;
pub const BOOTLOADER_MAX: u32 = 0x0001_6000;
/// The down-link's window (`data_stream::down`): two pages, the last of the bootloader's
/// former 96 KiB (its image is about 66 KiB).
pub const DOWN_WINDOW_ADDR: u32 = 0x0001_6000;
pub const DOWN_WINDOW_PAGES: u32 = 2;

/// One page holding the device record (identity, configuration, device key).
pub const DEVICE_RECORD_ADDR: u32 = 0x0001_8000;
/// One page kept for the debug-lock word the emulated board uses. On this chip the lock is
/// UICR.APPROTECT (see the board port); the page stays reserved so both maps name it.
pub const DEBUG_LOCK_ADDR: u32 = 0x0001_9000;
/// Value of the word at [`DEBUG_LOCK_ADDR`] once the debug port has been locked ("LOCK").
pub const DEBUG_LOCK_MAGIC: u32 = 0x4B43_4F4C;
/// Boot state of the update path: two pages of append-only records (`update::boot_state`).
pub const BOOT_STATE_ADDR: u32 = 0x0001_A000;
pub const BOOT_STATE_PAGES: u32 = 2;
/// Data-stream counter journal (`data_stream::CounterJournal`): two pages.
pub const DATA_COUNTER_ADDR: u32 = 0x0001_C000;
pub const DATA_COUNTER_PAGES: u32 = 2;
/// Anti-rollback floor of the app slot (`app::AppFloor`): two pages.
pub const APP_FLOOR_ADDR: u32 = 0x0001_E000;
pub const APP_FLOOR_PAGES: u32 = 2;

/// Offset of the trust-anchor block from the start of a bootloader or OS image body.
pub const TRUST_ANCHORS_OFFSET: u32 = 0x400;

/// Installed operating system: signed header, then the image.
pub const OS_SLOT_ADDR: u32 = 0x0002_0000;
pub const OS_SLOT_SIZE: u32 = 0x0004_0000;
/// Room left for the signed header in front of an image; also satisfies VTOR alignment.
pub const IMAGE_HEADER_SPACE: u32 = 0x200;
/// Staging slot for updates, laid out like the OS slot.
pub const STAGING_SLOT_ADDR: u32 = 0x0006_0000;
pub const STAGING_SLOT_SIZE: u32 = 0x0004_0000;
/// Backup of the previous OS while an update is installed (swap with revert).
pub const BACKUP_SLOT_ADDR: u32 = 0x000A_0000;
pub const BACKUP_SLOT_SIZE: u32 = 0x0004_0000;
/// Application slot: the first half of the last 128 KiB.
pub const APP_SLOT_ADDR: u32 = 0x000E_0000;
pub const APP_SLOT_SIZE: u32 = 0x0001_0000;
/// Where an app package is received and verified before it replaces the app (`app::install`),
/// up to the end of flash.
pub const APP_STAGING_ADDR: u32 = 0x000F_0000;
/// The app staging slot's size (the app slot's).
pub const APP_STAGING_SIZE: u32 = APP_SLOT_SIZE;
/// RAM of an installed application: the top 48 KiB of RAM below the update-request word,
/// which the OS must leave alone.
pub const APP_RAM_ADDR: u32 = 0x2003_4000;
pub const APP_RAM_SIZE: u32 = 0x0000_BF00;

/// The chip's unique ID: FICR.DEVICEID (64 bits, factory programmed), the start of the
/// 16 bytes the port reads (DEVICEID, then FICR.INFO.PART and FICR.INFO.VARIANT).
pub const UNIQUE_ID_ADDR: u32 = 0x1000_0060;
pub const UNIQUE_ID_LEN: usize = 16;
/// The OS's "serve an update" request to the bootloader: a RAM word outside every program's
/// `.data`/`.bss`/stack (the last 256 bytes of RAM are nobody's), which a jump keeps and a
/// power-on clears to an undefined value that is not the magic with overwhelming odds.
pub const UPDATE_REQUEST_ADDR: u32 = 0x2003_FFF0;
/// "FGUR".
pub const UPDATE_REQUEST_MAGIC: u32 = 0x5255_4746;

/// The RAM flash loader: the emulated board's addresses (its 64 KiB fit this chip's RAM).
pub const LOADER_BASE: u32 = 0x2000_0000;
pub const LOADER_MAX: u32 = 0x0000_A000;
/// The loader's `.data`/`.bss`; its stack grows down from [`LOADER_STACK_TOP`].
pub const LOADER_RAM: u32 = 0x2000_A000;
pub const LOADER_STACK_TOP: u32 = 0x2000_DC00;
/// Parameter block the station writes before starting the loader.
pub const PARAMS_ADDR: u32 = 0x2000_DC00;
/// The RAM mailbox both sides exchange frames through while the target is halted.
pub const MAILBOX_ADDR: u32 = 0x2000_DD00;
/// RAM the loader may use in all, from [`LOADER_BASE`].
pub const LOADER_FOOTPRINT: u32 = 0x0001_0000;
/// Where the loader copies a test application: the 128 KiB after the loader's footprint.
pub const TEST_APP_ADDR: u32 = 0x2001_0000;
pub const TEST_APP_MAX: u32 = 0x0002_0000;

/// UART0 (the legacy, non-DMA UART at the UARTE0 address): the update link.
pub const UART0_BASE: u32 = 0x4000_2000;

/// RAM the bootloader and the OS may use: everything below the app's RAM.
pub const SRAM_BASE: u32 = 0x2000_0000;
pub const SRAM_SIZE: u32 = APP_RAM_ADDR - SRAM_BASE;
