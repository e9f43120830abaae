/* The device's identity (its device record) and the proofs it gives under its device key. */
#ifndef FG_DEVICE_H
#define FG_DEVICE_H
#include <stdint.h>

#include "boot_state.h"

typedef struct {
    uint8_t serial[16];
    uint32_t product_id;
    uint32_t bootloader_version;
    uint8_t device_key[32];
} device_identity;

/* Reads and checks the device record; 0 when the device is provisioned. */
int device_load(device_identity *id);

/* The version in this OS's own signed header (the bootloader verified it before the jump). */
uint32_t device_os_version(void);

/* `hello` response for `challenge`: body (36 bytes) then HMAC proof (32), into out[68]. */
void device_hello(const device_identity *id, uint32_t os_version, const uint8_t challenge[32],
                  uint8_t out[68]);

/* Status receipt for `challenge`: body (48 bytes) then HMAC proof (32), into out[80]. */
void device_receipt(const device_identity *id, uint32_t os_version, const boot_state *boot,
                    const uint8_t challenge[32], uint8_t out[80]);

#endif
