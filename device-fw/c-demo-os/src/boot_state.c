/* Boot-state pages: 2 pages of append-only 64-byte snapshots at FG_BOOT_STATE_ADDR.
 *
 *   magic "FGBS" u32 | seq u32 | phase u8 | attempts u8 | outcome u8 | 0 u8 | floor u32
 *   | new_version u32 | old_version u32 | old_pages u16 | new_pages u16 | last_error u32
 *   | 0xFF * 4 | crc32 u32 (over the 36 bytes before it) | 0xFF * 24
 *
 * The valid snapshot with the highest seq wins. A new one goes in the first erased slot after
 * the newest page's last used slot; when that page is full, the other page is erased first. */
#include "boot_state.h"

#include "board.h"
#include "crc32.h"
#include "flashgate.h"

#define SLOTS_PER_PAGE (FG_FLASH_PAGE_SIZE / FG_STATE_SLOT_LEN)

static uint32_t slot_addr(uint32_t page, uint32_t slot)
{
    return FG_BOOT_STATE_ADDR + page * FG_FLASH_PAGE_SIZE + slot * FG_STATE_SLOT_LEN;
}

static int decode(const uint8_t *b, boot_state *s)
{
    if (fg_crc32(0, b, FG_STATE_DATA_LEN) != fg_get32(b + FG_STATE_DATA_LEN))
        return -1;
    if (fg_get32(b) != FG_STATE_MAGIC || b[8] > FG_PHASE_MAX || b[10] > FG_OUTCOME_MAX)
        return -1;
    s->seq = fg_get32(b + 4);
    s->phase = b[8];
    s->attempts = b[9];
    s->outcome = b[10];
    s->floor = fg_get32(b + 12);
    s->new_version = fg_get32(b + 16);
    s->old_version = fg_get32(b + 20);
    s->old_pages = (uint16_t)(b[24] | b[25] << 8);
    s->new_pages = (uint16_t)(b[26] | b[27] << 8);
    s->last_error = fg_get32(b + 28);
    return 0;
}

static void encode(const boot_state *s, uint8_t b[FG_STATE_SLOT_LEN])
{
    memset(b, 0xFF, FG_STATE_SLOT_LEN);
    fg_put32(b, FG_STATE_MAGIC);
    fg_put32(b + 4, s->seq);
    b[8] = s->phase;
    b[9] = s->attempts;
    b[10] = s->outcome;
    b[11] = 0;
    fg_put32(b + 12, s->floor);
    fg_put32(b + 16, s->new_version);
    fg_put32(b + 20, s->old_version);
    fg_put16(b + 24, s->old_pages);
    fg_put16(b + 26, s->new_pages);
    fg_put32(b + 28, s->last_error);
    fg_put32(b + FG_STATE_DATA_LEN, fg_crc32(0, b, FG_STATE_DATA_LEN));
}

static int erased(const uint8_t *b)
{
    for (uint32_t i = 0; i < FG_STATE_SLOT_LEN; i++)
        if (b[i] != 0xFF)
            return 0;
    return 1;
}

/* The newest snapshot and its page; -1 as page when there is none. */
static int newest(boot_state *out)
{
    int page_of_newest = -1;
    memset(out, 0, sizeof *out);
    for (uint32_t page = 0; page < FG_BOOT_STATE_PAGES; page++) {
        for (uint32_t slot = 0; slot < SLOTS_PER_PAGE; slot++) {
            uint8_t b[FG_STATE_SLOT_LEN];
            boot_state s;
            board_flash_read(slot_addr(page, slot), b, sizeof b);
            if (decode(b, &s) == 0 && (page_of_newest < 0 || s.seq > out->seq)) {
                *out = s;
                page_of_newest = (int)page;
            }
        }
    }
    return page_of_newest;
}

int boot_state_read(boot_state *out)
{
    newest(out);
    return 0;
}

int boot_state_confirm(uint32_t running_version)
{
    boot_state s;
    int found = newest(&s);
    if (s.phase != FG_PHASE_TRIAL || s.new_version != running_version)
        return 0;
    uint32_t page = found < 0 ? 0 : (uint32_t)found;
    /* The slot after the last used one of the newest page (a torn slot counts as used). */
    uint32_t next = SLOTS_PER_PAGE;
    for (uint32_t slot = SLOTS_PER_PAGE; slot-- > 0;) {
        uint8_t b[FG_STATE_SLOT_LEN];
        board_flash_read(slot_addr(page, slot), b, sizeof b);
        if (!erased(b))
            break;
        next = slot;
    }
    if (next == SLOTS_PER_PAGE) {
        page = (page + 1) % FG_BOOT_STATE_PAGES;
        next = 0;
        if (board_flash_erase_page(slot_addr(page, 0)))
            return -1;
    }
    s.seq += 1;
    s.phase = FG_PHASE_IDLE;
    s.outcome = FG_OUTCOME_UPDATED;
    if (running_version > s.floor)
        s.floor = running_version;
    uint8_t b[FG_STATE_SLOT_LEN];
    encode(&s, b);
    return board_flash_program(slot_addr(page, next), b, sizeof b);
}
