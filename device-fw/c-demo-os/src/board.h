/* The board: what a port to another MCU replaces (UART, flash programming, the hand-over). */
#ifndef FG_BOARD_H
#define FG_BOARD_H
#include <stdint.h>
#include <stddef.h>

void board_uart_init(void);
void board_uart_write(const uint8_t *data, size_t len);
/* The next received byte, or -1 when none is waiting. */
int board_uart_read(void);

/* NOR flash: erase a 4 KiB page to 0xFF; program bytes that read 0xFF (0 on success). */
int board_flash_erase_page(uint32_t addr);
int board_flash_program(uint32_t addr, const uint8_t *data, size_t len);
/* Flash is memory-mapped: reads are plain (volatile) loads. */
void board_flash_read(uint32_t addr, uint8_t *out, size_t len);

/* Asks the bootloader to serve an update and jumps to it (never returns). */
void board_enter_bootloader(void) __attribute__((noreturn));

#endif
