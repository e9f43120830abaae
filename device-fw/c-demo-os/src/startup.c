/* Vector table and reset handler: what a C OS needs before main(). */
#include <stdint.h>

#include "flashgate.h"

extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;
int main(void);

void Reset_Handler(void) __attribute__((noreturn));
static void Default_Handler(void);

/* The bootloader already set VTOR and MSP from this table (docs/firmware-guide.md); a debugger
 * or a cold reset of a board without a bootloader would too. */
__attribute__((section(".vectors"), used)) static const void *const vectors[48] = {
    &__stack_top,
    Reset_Handler,
    [2 ... 47] = Default_Handler,
};

/* The trust anchors the image pins: zero keys here, filled by `flashgate image sign`. Read
 * them with volatile loads (the compiler would fold these zeros): see trust_anchors_read(). */
__attribute__((section(".trust_anchors"), used)) static const uint8_t trust_anchors[FG_TRUST_ANCHORS_LEN] = {
    'F', 'G', 'T', 'A', 1, 0, 0, 0, /* magic "FGTA", format 1; then vendor, authority, reserved */
};

void Reset_Handler(void)
{
    const uint32_t *src = &__data_load;
    for (uint32_t *dst = &__data_start; dst < &__data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    main();
    for (;;) {
    }
}

static void Default_Handler(void)
{
    for (;;) {
    }
}
