/* The boot-state record the bootloader keeps (protocol/src/update/boot_state.rs), and the
 * confirmation a new OS writes into it so its update is not reverted. */
#ifndef FG_BOOT_STATE_H
#define FG_BOOT_STATE_H
#include <stdint.h>

typedef struct {
    uint32_t seq;
    uint8_t phase, attempts, outcome;
    uint32_t floor, new_version, old_version;
    uint16_t old_pages, new_pages;
    uint32_t last_error;
} boot_state;

/* The newest valid snapshot (all zero on a fresh device); returns 0. */
int boot_state_read(boot_state *out);

/* If an update of `running_version` is on trial: ends the trial (phase idle, outcome updated,
 * floor raised to the version) by appending a snapshot. Otherwise changes nothing. Returns 0,
 * or -1 if flash refused the write. */
int boot_state_confirm(uint32_t running_version);

#endif
