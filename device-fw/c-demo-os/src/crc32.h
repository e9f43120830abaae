#ifndef FG_CRC32_H
#define FG_CRC32_H
#include <stdint.h>
#include <stddef.h>

/* CRC-32/ISO-HDLC, continued from `crc` (start with 0); check value of "123456789" 0xCBF43926. */
uint32_t fg_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif
