/* flashgate's layout and formats as a C OS needs them.
 *
 * Mirrors protocol/src/layout.rs (addresses) and the formats of docs/protocol.md and
 * docs/firmware-guide.md; the end-to-end test (tests/tests/e2e/c_demo_os.rs) fails if they drift.
 * Every integer on the wire and in flash is little-endian. */
#ifndef FLASHGATE_H
#define FLASHGATE_H

#include <stdint.h>
#include <stddef.h>

/* Flash (mps2-an386: the code memory at 0, NOR rules enforced in software). */
#define FG_FLASH_PAGE_SIZE      4096u
#define FG_BOOTLOADER_BASE      0x00000000u
#define FG_DEVICE_RECORD_ADDR   0x00020000u
#define FG_BOOT_STATE_ADDR      0x00022000u
#define FG_BOOT_STATE_PAGES     2u
#define FG_OS_SLOT_ADDR         0x00040000u

/* RAM word that asks the bootloader to serve an update instead of starting the OS. */
#define FG_UPDATE_REQUEST_ADDR  0x01003FF0u
#define FG_UPDATE_REQUEST_MAGIC 0x52554746u /* "FGUR" */

/* Signed image header (docs/protocol.md section 3), in front of the OS body. */
#define FG_IMAGE_MAGIC          0x4D494746u /* "FGIM" */
#define FG_IMAGE_VERSION_OFFSET 12u

/* Trust-anchor block at body + 0x400 (protocol/src/trust_anchors.rs). */
#define FG_TRUST_ANCHORS_LEN    80u

/* Device record (protocol/src/device_record.rs, format 2: config v2 with the authority key,
 * the device certificate after the bootloader digest). */
#define FG_RECORD_MAGIC         0x52444746u /* "FGDR" */
#define FG_RECORD_FORMAT        2u
#define FG_RECORD_LEN           348u
#define FG_RECORD_CHECKED_LEN   332u /* check = SHA-256 of these bytes, first 16 */
#define FG_RECORD_SERIAL        8u
#define FG_RECORD_PRODUCT       24u
#define FG_RECORD_DEVICE_KEY    100u
#define FG_RECORD_BL_VERSION    132u

/* The chip's unique ID (protocol/src/layout.rs UNIQUE_ID_ADDR), 16 bytes. */
#define FG_UNIQUE_ID_ADDR       0x01000000u

/* Boot-state slots (protocol/src/update/boot_state.rs). */
#define FG_STATE_MAGIC          0x53424746u /* "FGBS" */
#define FG_STATE_SLOT_LEN       64u
#define FG_STATE_DATA_LEN       36u
#define FG_PHASE_IDLE           0u
#define FG_PHASE_TRIAL          3u
#define FG_PHASE_MAX            4u
#define FG_OUTCOME_UPDATED      1u
#define FG_OUTCOME_MAX          3u

/* UART frames (docs/protocol.md section 5): F7 47 | type u8 | len u16 | payload | crc32. */
#define FG_SYNC0                0xF7u
#define FG_SYNC1                0x47u
#define FG_MAX_PAYLOAD          4352u
#define FG_MSG_HELLO            0x01u
#define FG_MSG_HELLO_RESPONSE   0x81u
#define FG_MSG_BOOT_BANNER      0x82u
#define FG_MSG_ERROR            0xEEu
/* Hello v2: serial[16] chip_uid[16] product bootloader_version state reserved[3] os_version
 * reason, then the HMAC proof. */
#define FG_HELLO_BODY_LEN       52u
#define FG_HELLO_LEN            84u
#define FG_MSG_STATUS           0x14u
#define FG_MSG_STATUS_RECEIPT   0x95u
#define FG_MSG_ENTER_UPDATE     0x15u
#define FG_MSG_UPDATE_MODE      0x96u

/* Error codes (protocol/src/error.rs). */
#define FG_ERR_BAD_LENGTH       0x0101u
#define FG_ERR_UNKNOWN_MESSAGE  0x0103u
#define FG_ERR_BAD_CHECKSUM     0x0105u
#define FG_ERR_NOT_PROVISIONED  0x0402u
#define FG_ERR_FLASH            0x0404u
#define FG_ERR_UID_MISMATCH     0x0410u

/* Little-endian access to byte buffers. */
static inline uint32_t fg_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void fg_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void fg_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Freestanding: the few memory routines the code (and the compiler) needs, in mem.c. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int fg_equal(const uint8_t *a, const uint8_t *b, size_t n);

#endif
