/* The device's identity (its device record) and the proofs it gives under its device key. */
#ifndef FG_DEVICE_H
#define FG_DEVICE_H
#include <stdint.h>

#include "boot_state.h"

typedef struct {
    uint8_t serial[16];
    uint8_t chip_uid[16];
    uint32_t product_id;
    uint32_t bootloader_version;
    uint8_t device_key[32];
} device_identity;

/* Reads and checks the device record and that it names this chip (its serial is the unique
 * ID: a copied flash fails); 0 when the device is provisioned, -1 when it is not, -2 when the
 * record belongs to another chip. The certificate's ed25519 signature is the bootloader's to
 * check (this small OS carries no ed25519; the Rust demo OS checks it too). */
int device_load(device_identity *id);

/* The version in this OS's own signed header (the bootloader verified it before the jump). */
uint32_t device_os_version(void);

/* `hello` response for `challenge`: body (52 bytes) then HMAC proof (32), into out[84]. */
void device_hello(const device_identity *id, uint32_t os_version, const uint8_t challenge[32],
                  uint8_t out[84]);

/* Status receipt for `challenge`: body (48 bytes) then HMAC proof (32), into out[80]. */
void device_receipt(const device_identity *id, uint32_t os_version, const boot_state *boot,
                    const uint8_t challenge[32], uint8_t out[80]);

#endif
