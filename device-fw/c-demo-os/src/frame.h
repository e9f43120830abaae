/* UART frames: F7 47 | type u8 | len u16 | payload | crc32 (over type, len, payload). */
#ifndef FG_FRAME_H
#define FG_FRAME_H
#include <stdint.h>
#include <stddef.h>

#include "flashgate.h"

void frame_send(uint8_t type, const uint8_t *payload, uint16_t len);
void frame_send_error(uint32_t code);

/* A streaming decoder: feed bytes, get frames (or the error of a dropped frame). */
typedef struct {
    int phase;
    uint32_t got;
    uint32_t len;    /* payload length announced */
    uint8_t header[3];
    uint8_t crc[4];
    uint8_t payload[FG_MAX_PAYLOAD];
} frame_decoder;

enum frame_event { FRAME_NONE, FRAME_OK, FRAME_BAD_LENGTH, FRAME_BAD_CHECKSUM };

/* Feeds one byte; on FRAME_OK, `header[0]` is the type, `len` and `payload` the payload. */
enum frame_event frame_push(frame_decoder *d, uint8_t byte);

#endif
