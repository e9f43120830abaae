/* QEMU mps2-an386: CMSDK UART0 at 0x40004000; "flash" is the code memory at 0, plain RAM in
 * QEMU, so the NOR rules a real flash controller enforces are enforced here (like the Rust
 * board crate's CodeFlash). On a real MCU these functions drive its flash controller. */
#include "board.h"
#include "flashgate.h"

#define UART0_DATA    (*(volatile uint32_t *)0x40004000u)
#define UART0_STATE   (*(volatile uint32_t *)0x40004004u)
#define UART0_CTRL    (*(volatile uint32_t *)0x40004008u)
#define UART0_BAUDDIV (*(volatile uint32_t *)0x40004010u)
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u

#define SCB_VTOR      (*(volatile uint32_t *)0xE000ED08u)
#define SYST_CSR      (*(volatile uint32_t *)0xE000E010u)
#define FLASH_SIZE    0x00400000u

void board_uart_init(void)
{
    UART0_BAUDDIV = 16;
    UART0_CTRL = 3; /* TX and RX enabled, polled */
}

void board_uart_write(const uint8_t *data, size_t len)
{
    while (len--) {
        while (UART0_STATE & STATE_TX_FULL) {
        }
        UART0_DATA = *data++;
    }
}

int board_uart_read(void)
{
    if (UART0_STATE & STATE_RX_FULL)
        return (int)(UART0_DATA & 0xFF);
    return -1;
}

static int in_flash(uint32_t addr, size_t len)
{
    return addr < FLASH_SIZE && len <= FLASH_SIZE - addr;
}

void board_flash_read(uint32_t addr, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = *(volatile const uint8_t *)(uintptr_t)(addr + i);
}

int board_flash_erase_page(uint32_t addr)
{
    if (addr % FG_FLASH_PAGE_SIZE || !in_flash(addr, FG_FLASH_PAGE_SIZE))
        return -1;
    for (uint32_t i = 0; i < FG_FLASH_PAGE_SIZE; i += 4)
        *(volatile uint32_t *)(uintptr_t)(addr + i) = 0xFFFFFFFFu;
    return 0;
}

int board_flash_program(uint32_t addr, const uint8_t *data, size_t len)
{
    if (!in_flash(addr, len))
        return -1;
    for (size_t i = 0; i < len; i++)
        if (*(volatile const uint8_t *)(uintptr_t)(addr + i) != 0xFF)
            return -1; /* NOR: only erased cells can be programmed; nothing written */
    for (size_t i = 0; i < len; i++)
        *(volatile uint8_t *)(uintptr_t)(addr + i) = data[i];
    return 0;
}

void board_enter_bootloader(void)
{
    *(volatile uint32_t *)FG_UPDATE_REQUEST_ADDR = FG_UPDATE_REQUEST_MAGIC;
    /* The bootloader's vector table is at address 0: hide the constant from the compiler,
     * which would otherwise treat a load from it as a null dereference. */
    uintptr_t base = FG_BOOTLOADER_BASE;
    __asm volatile("" : "+r"(base));
    const volatile uint32_t *vectors = (const volatile uint32_t *)base;
    uint32_t sp = vectors[0];
    uint32_t reset = vectors[1];
    /* As the bootloader hands over to us: interrupts off, SysTick off, VTOR, MSP, PC. */
    __asm volatile("cpsid i" ::: "memory");
    SYST_CSR = 0;
    SCB_VTOR = FG_BOOTLOADER_BASE;
    __asm volatile("dsb\n isb" ::: "memory");
    /* CONTROL.SPSEL = 0 (the main stack), then MSP and the reset vector. */
    uint32_t control;
    __asm volatile("mrs %0, control\n bic %0, %0, #2\n msr control, %0\n isb"
                   : "=r"(control) : : "memory");
    __asm volatile("msr msp, %0\n bx %1" : : "r"(sp), "r"(reset) : "memory");
    __builtin_unreachable();
}
