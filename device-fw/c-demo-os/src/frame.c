#include "frame.h"

#include "board.h"
#include "crc32.h"

void frame_send(uint8_t type, const uint8_t *payload, uint16_t len)
{
    uint8_t head[5] = {FG_SYNC0, FG_SYNC1, type};
    fg_put16(head + 3, len);
    uint32_t crc = fg_crc32(0, head + 2, 3);
    crc = fg_crc32(crc, payload, len);
    uint8_t tail[4];
    fg_put32(tail, crc);
    board_uart_write(head, sizeof head);
    board_uart_write(payload, len);
    board_uart_write(tail, sizeof tail);
}

void frame_send_error(uint32_t code)
{
    uint8_t payload[4];
    fg_put32(payload, code);
    frame_send(FG_MSG_ERROR, payload, sizeof payload);
}

enum { SYNC0, SYNC1, HEADER, PAYLOAD, CRC };

enum frame_event frame_push(frame_decoder *d, uint8_t byte)
{
    switch (d->phase) {
    case SYNC0:
        if (byte == FG_SYNC0)
            d->phase = SYNC1;
        break;
    case SYNC1:
        /* A repeated first sync byte keeps waiting for the second (resynchronisation). */
        d->phase = byte == FG_SYNC1 ? HEADER : byte == FG_SYNC0 ? SYNC1 : SYNC0;
        d->got = 0;
        break;
    case HEADER:
        d->header[d->got++] = byte;
        if (d->got == 3) {
            d->len = (uint32_t)d->header[1] | (uint32_t)d->header[2] << 8;
            if (d->len > FG_MAX_PAYLOAD) {
                d->phase = SYNC0;
                return FRAME_BAD_LENGTH;
            }
            d->got = 0;
            d->phase = d->len ? PAYLOAD : CRC;
        }
        break;
    case PAYLOAD:
        d->payload[d->got++] = byte;
        if (d->got == d->len) {
            d->got = 0;
            d->phase = CRC;
        }
        break;
    case CRC:
        d->crc[d->got++] = byte;
        if (d->got == 4) {
            d->phase = SYNC0;
            uint32_t crc = fg_crc32(fg_crc32(0, d->header, 3), d->payload, d->len);
            return crc == fg_get32(d->crc) ? FRAME_OK : FRAME_BAD_CHECKSUM;
        }
        break;
    }
    return FRAME_NONE;
}
