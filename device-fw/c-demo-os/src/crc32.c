/* CRC-32/ISO-HDLC (reflected, polynomial 0xEDB88320): UART frames and boot-state slots. */
#include "crc32.h"

uint32_t fg_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *data++;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}
