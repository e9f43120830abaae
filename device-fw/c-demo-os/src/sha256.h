#ifndef FG_SHA256_H
#define FG_SHA256_H
#include <stdint.h>
#include <stddef.h>

/* SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and the one HKDF-SHA256 shape flashgate's
 * proofs use (RFC 5869, 32 bytes of output). */
typedef struct {
    uint32_t h[8];
    uint8_t block[64];
    uint32_t used;      /* bytes in `block` */
    uint32_t total_lo;  /* message length in bytes, 64 bits */
    uint32_t total_hi;
} fg_sha256_ctx;

void fg_sha256_init(fg_sha256_ctx *s);
void fg_sha256_update(fg_sha256_ctx *s, const uint8_t *data, size_t len);
void fg_sha256_final(fg_sha256_ctx *s, uint8_t out[32]);
void fg_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

typedef struct {
    fg_sha256_ctx inner;
    uint8_t opad_key[64];
} fg_hmac;

void fg_hmac_init(fg_hmac *m, const uint8_t *key, size_t key_len);
void fg_hmac_update(fg_hmac *m, const uint8_t *data, size_t len);
void fg_hmac_final(fg_hmac *m, uint8_t out[32]);

/* HKDF-SHA256(salt, ikm, info) -> 32 bytes. */
void fg_hkdf32(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
               const uint8_t *info, size_t info_len, uint8_t out[32]);

/* Overwrites `len` bytes so the compiler cannot drop it (keys on the stack). */
void fg_wipe(void *p, size_t len);

#endif
