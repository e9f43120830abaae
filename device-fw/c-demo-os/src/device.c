/* Identity and proofs (docs/protocol.md sections 4, 5 and 7).
 *
 *   proof = HMAC-SHA256(K, label || challenge || body),  K = HKDF-SHA256(salt label,
 *           ikm device_key, info)
 *   hello:   label "flashgate-hello-v2",          info "hello-proof"
 *   receipt: label "flashgate-update-receipt-v1", info "receipt"                          */
#include "device.h"

#include "board.h"
#include "flashgate.h"
#include "sha256.h"

int device_load(device_identity *id)
{
    uint8_t record[FG_RECORD_LEN];
    uint8_t digest[32];
    board_flash_read(FG_DEVICE_RECORD_ADDR, record, sizeof record);
    fg_sha256(record, FG_RECORD_CHECKED_LEN, digest);
    int ok = fg_get32(record) == FG_RECORD_MAGIC && fg_get32(record + 4) == FG_RECORD_FORMAT &&
             fg_equal(digest, record + FG_RECORD_CHECKED_LEN, 16);
    board_flash_read(FG_UNIQUE_ID_ADDR, id->chip_uid, 16);
    int own_chip = ok && fg_equal(record + FG_RECORD_SERIAL, id->chip_uid, 16);
    if (own_chip) {
        memcpy(id->serial, record + FG_RECORD_SERIAL, 16);
        id->product_id = fg_get32(record + FG_RECORD_PRODUCT);
        id->bootloader_version = fg_get32(record + FG_RECORD_BL_VERSION);
        memcpy(id->device_key, record + FG_RECORD_DEVICE_KEY, 32);
    }
    fg_wipe(record, sizeof record);
    return own_chip ? 0 : ok ? -2 : -1;
}

uint32_t device_os_version(void)
{
    uint8_t header[16];
    board_flash_read(FG_OS_SLOT_ADDR, header, sizeof header);
    return fg_get32(header) == FG_IMAGE_MAGIC ? fg_get32(header + FG_IMAGE_VERSION_OFFSET) : 0;
}

static void prove(const uint8_t key[32], const char *label, size_t label_len, const char *info,
                  size_t info_len, const uint8_t challenge[32], const uint8_t *body,
                  size_t body_len, uint8_t proof[32])
{
    uint8_t k[32];
    fg_hkdf32((const uint8_t *)label, label_len, key, 32, (const uint8_t *)info, info_len, k);
    fg_hmac m;
    fg_hmac_init(&m, k, sizeof k);
    fg_hmac_update(&m, (const uint8_t *)label, label_len);
    fg_hmac_update(&m, challenge, 32);
    fg_hmac_update(&m, body, body_len);
    fg_hmac_final(&m, proof);
    fg_wipe(k, sizeof k);
}

#define TEXT(s) s, sizeof(s) - 1

void device_hello(const device_identity *id, uint32_t os_version, const uint8_t challenge[32],
                  uint8_t out[FG_HELLO_LEN])
{
    memset(out, 0, FG_HELLO_LEN);
    memcpy(out, id->serial, 16);
    memcpy(out + 16, id->chip_uid, 16);
    fg_put32(out + 32, id->product_id);
    fg_put32(out + 36, id->bootloader_version);
    out[40] = 1; /* state: OS running (reserved [3] stay zero) */
    fg_put32(out + 44, os_version);
    fg_put32(out + 48, 0); /* reason: none */
    prove(id->device_key, TEXT("flashgate-hello-v2"), TEXT("hello-proof"), challenge, out,
          FG_HELLO_BODY_LEN, out + FG_HELLO_BODY_LEN);
}

void device_receipt(const device_identity *id, uint32_t os_version, const boot_state *boot,
                    const uint8_t challenge[32], uint8_t out[80])
{
    memcpy(out, id->serial, 16);
    fg_put32(out + 16, id->product_id);
    fg_put32(out + 20, id->bootloader_version);
    out[24] = 1; /* running: the OS */
    out[25] = boot->outcome;
    out[26] = boot->phase;
    out[27] = boot->attempts;
    fg_put32(out + 28, os_version);
    fg_put32(out + 32, boot->floor);
    fg_put32(out + 36, boot->new_version);
    fg_put32(out + 40, boot->last_error);
    fg_put32(out + 44, 0); /* reason: none */
    prove(id->device_key, TEXT("flashgate-update-receipt-v1"), TEXT("receipt"), challenge, out,
          48, out + 48);
}
