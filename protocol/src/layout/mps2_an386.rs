//! QEMU `mps2-an386`, the emulated board every test runs on (see `device-fw/README.md`).

/// Erase granularity of the (emulated) NOR flash.
pub const FLASH_PAGE_SIZE: u32 = 4096;
/// Start and size of the code memory that plays the part of on-chip flash.
pub const FLASH_BASE: u32 = 0x0000_0000;
pub const FLASH_SIZE: u32 = 0x0040_0000;

/// The secure bootloader: vector table at the reset address.
pub const BOOTLOADER_BASE: u32 = 0x0000_0000;
pub const BOOTLOADER_MAX: u32 = 0x0002_0000;

/// One page holding the device record (identity, configuration, device key).
pub const DEVICE_RECORD_ADDR: u32 = 0x0002_0000;
/// One page holding only the debug-lock word, so it can be set on its own.
pub const DEBUG_LOCK_ADDR: u32 = 0x0002_1000;
/// Value of the word at [`DEBUG_LOCK_ADDR`] once the debug port has been locked ("LOCK").
pub const DEBUG_LOCK_MAGIC: u32 = 0x4B43_4F4C;
/// Boot state of the update path (anti-rollback floor, install progress, boot counter):
/// two pages of append-only records (see `update::boot_state`), so one page is always intact
/// while the other is erased.
pub const BOOT_STATE_ADDR: u32 = 0x0002_2000;
pub const BOOT_STATE_PAGES: u32 = 2;
/// Data-stream counter journal (demo OS): two pages of append-only `epoch | mark` entries
/// (`data_stream::CounterJournal`), after the boot-state pages.
pub const DATA_COUNTER_ADDR: u32 = 0x0002_4000;
pub const DATA_COUNTER_PAGES: u32 = 2;
/// Anti-rollback floor of the app slot (`app::AppFloor`): two pages of append-only
/// `version | !version` entries, after the data-counter pages.
pub const APP_FLOOR_ADDR: u32 = 0x0002_6000;
pub const APP_FLOOR_PAGES: u32 = 2;
/// The down-link's window (demo OS): two pages of append-only `epoch | next counter` entries
/// (a `data_stream::CounterJournal`, see `data_stream::down`), after the app-floor pages.
pub const DOWN_WINDOW_ADDR: u32 = 0x0002_8000;
pub const DOWN_WINDOW_PAGES: u32 = 2;

/// Offset of the trust-anchor block (`trust_anchors`, linker section `.trust_anchors`) from the
/// start of a bootloader or OS image body: after the vector table, which must end before it.
pub const TRUST_ANCHORS_OFFSET: u32 = 0x400;

/// Installed operating system: a 512-byte signed header, then the image (vector table first).
pub const OS_SLOT_ADDR: u32 = 0x0004_0000;
pub const OS_SLOT_SIZE: u32 = 0x0008_0000;
/// Room left for the signed header in front of an image; also satisfies VTOR alignment.
pub const IMAGE_HEADER_SPACE: u32 = 0x200;
/// Staging slot for updates: the decrypted package lands here, laid out like the OS slot
/// (signed header, then transfer bookkeeping in the header space, body at +0x200).
pub const STAGING_SLOT_ADDR: u32 = 0x000C_0000;
pub const STAGING_SLOT_SIZE: u32 = 0x0008_0000;
/// Backup of the previous OS while an update is installed (swap with revert).
pub const BACKUP_SLOT_ADDR: u32 = 0x0014_0000;
pub const BACKUP_SLOT_SIZE: u32 = 0x0008_0000;
/// Application slot: a 512-byte signed header, then the app image (see `app`).
pub const APP_SLOT_ADDR: u32 = 0x0020_0000;
pub const APP_SLOT_SIZE: u32 = 0x0004_0000;
/// Where an app package is received and verified before it replaces the app in its slot
/// (`app::install`): a refused or cut transfer leaves the installed app as it was.
pub const APP_STAGING_ADDR: u32 = 0x0024_0000;
/// The app staging slot's size (the app slot's).
pub const APP_STAGING_SIZE: u32 = APP_SLOT_SIZE;
/// RAM of an installed application (`.data`, `.bss`; it runs on the OS's stack): in the
/// second SRAM block of mps2-an386, which the OS does not use.
pub const APP_RAM_ADDR: u32 = 0x2100_0000;
pub const APP_RAM_SIZE: u32 = 0x0004_0000;

/// The board's unique ID (its serial): 16 bytes the launcher loads at every start.
/// No QEMU board has one; on a real MCU this is the factory-programmed UID register.
pub const UNIQUE_ID_ADDR: u32 = 0x0100_0000;
pub const UNIQUE_ID_LEN: usize = 16;
/// A RAM word the OS sets to [`UPDATE_REQUEST_MAGIC`] before it jumps (not resets) back to the
/// bootloader, asking it to serve the update transfer instead of starting the OS. In block
/// RAM, which neither program initialises; a real MCU uses a `.noinit` word or a backup
/// register.
pub const UPDATE_REQUEST_ADDR: u32 = 0x0100_3FF0;
/// "FGUR".
pub const UPDATE_REQUEST_MAGIC: u32 = 0x5255_4746;

/// The RAM flash loader: written here by the station, header at its first byte. Everything
/// the loader needs — image, `.data`/`.bss`, stack, parameter block, mailbox — lies in the
/// [`LOADER_FOOTPRINT`] bytes from here, so it runs on an MCU with 64 KiB of RAM in all.
pub const LOADER_BASE: u32 = 0x2000_0000;
pub const LOADER_MAX: u32 = 0x0000_A000;
/// The loader's `.data`/`.bss` live here; its stack grows down from [`LOADER_STACK_TOP`].
pub const LOADER_RAM: u32 = 0x2000_A000;
pub const LOADER_STACK_TOP: u32 = 0x2000_DC00;
/// Parameter block the station writes before starting the loader.
pub const PARAMS_ADDR: u32 = 0x2000_DC00;
/// The RAM mailbox both sides exchange frames through while the target is halted.
pub const MAILBOX_ADDR: u32 = 0x2000_DD00;
/// RAM the loader may use in all, from [`LOADER_BASE`] (checked against the mailbox's end in
/// `mailbox`).
pub const LOADER_FOOTPRINT: u32 = 0x0001_0000;
/// Where the loader copies a test application before calling it.
pub const TEST_APP_ADDR: u32 = 0x2008_0000;
pub const TEST_APP_MAX: u32 = 0x0004_0000;

/// CMSDK APB UART0 of the mps2 boards: the update link.
pub const UART0_BASE: u32 = 0x4000_4000;

/// SRAM the bootloader and the OS may use (the first 4 MiB SRAM block; the update-request
/// word lives in block RAM, outside it).
pub const SRAM_BASE: u32 = 0x2000_0000;
pub const SRAM_SIZE: u32 = 0x0040_0000;
