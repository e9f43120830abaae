/* flashgate's C demo OS: the smallest OS a product team can start from.
 *
 * At start: confirm the update that installed it (so the bootloader does not revert it), send
 * the boot banner frame. Then serve the UART: `hello` (identity, proved with the device key),
 * `status` (the update receipt the coordinator verifies), `enter update` (hand over to the
 * bootloader, which receives the next update). Anything else is answered with an error frame,
 * as the Rust demo OS does. No data stream, no apps: see docs/firmware-guide.md. */
#include "board.h"
#include "boot_state.h"
#include "device.h"
#include "flashgate.h"
#include "frame.h"
#include "sha256.h"

static frame_decoder decoder;

static void banner(uint32_t version, int confirmed)
{
    static const char text[] = "flashgate c-demo-os v";
    uint8_t line[64];
    size_t n = sizeof text - 1;
    memcpy(line, text, n);
    char digits[10];
    int d = 0;
    do {
        digits[d++] = (char)('0' + version % 10);
        version /= 10;
    } while (version);
    while (d)
        line[n++] = (uint8_t)digits[--d];
    static const char tail[] = " on mps2-an386";
    memcpy(line + n, tail, sizeof tail - 1);
    n += sizeof tail - 1;
    if (!confirmed) {
        static const char warn[] = " (confirm failed)";
        memcpy(line + n, warn, sizeof warn - 1);
        n += sizeof warn - 1;
    }
    frame_send(FG_MSG_BOOT_BANNER, line, (uint16_t)n);
}

/* Serves one frame: every request gets exactly one reply. */
static void serve(const device_identity *id, int loaded, uint32_t version)
{
    uint8_t type = decoder.header[0];
    uint32_t len = decoder.len;
    uint8_t reply[FG_HELLO_LEN];
    switch (type) {
    case FG_MSG_HELLO:
    case FG_MSG_STATUS:
        if (len != 32) {
            frame_send_error(FG_ERR_BAD_LENGTH);
        } else if (loaded == -2) {
            frame_send_error(FG_ERR_UID_MISMATCH);
        } else if (loaded != 0) {
            frame_send_error(FG_ERR_NOT_PROVISIONED);
        } else if (type == FG_MSG_HELLO) {
            device_hello(id, version, decoder.payload, reply);
            frame_send(FG_MSG_HELLO_RESPONSE, reply, FG_HELLO_LEN);
        } else {
            boot_state boot;
            boot_state_read(&boot);
            device_receipt(id, version, &boot, decoder.payload, reply);
            frame_send(FG_MSG_STATUS_RECEIPT, reply, 80);
        }
        break;
    case FG_MSG_ENTER_UPDATE:
        if (len != 0) {
            frame_send_error(FG_ERR_BAD_LENGTH);
            break;
        }
        frame_send(FG_MSG_UPDATE_MODE, reply, 0);
        board_enter_bootloader();
    default:
        frame_send_error(FG_ERR_UNKNOWN_MESSAGE);
    }
}

int main(void)
{
    board_uart_init();
    uint32_t version = device_os_version();
    /* This image runs: confirm it, ending its trial and raising the anti-rollback floor. */
    int confirmed = boot_state_confirm(version) == 0;
    device_identity id;
    int loaded = device_load(&id);
    banner(version, confirmed);
    for (;;) {
        int byte = board_uart_read();
        if (byte < 0)
            continue;
        switch (frame_push(&decoder, (uint8_t)byte)) {
        case FRAME_OK:
            serve(&id, loaded, version);
            break;
        case FRAME_BAD_LENGTH:
            frame_send_error(FG_ERR_BAD_LENGTH);
            break;
        case FRAME_BAD_CHECKSUM:
            frame_send_error(FG_ERR_BAD_CHECKSUM);
            break;
        case FRAME_NONE:
            break;
        }
    }
}
