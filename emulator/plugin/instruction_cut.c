/*
 * flashgate's instruction-count power cut: a QEMU TCG plugin (QEMU >= 6.0, plugin API 1).
 *
 * It counts executed guest instructions from the first store into [arm_lo, arm_hi) on, and
 * freezes the vCPU right before instruction number `cut` of that count: the instruction is
 * not executed, nothing after it happens, and the QEMU main loop still answers QMP, so the
 * launcher saves the code memory as it is at that instant and kills QEMU. Under `-icount
 * shift=0` the guest's instruction stream after the arming store does not depend on host
 * timing (nothing reaches the guest meanwhile), so a cut point replays exactly.
 *
 * Arguments (key=value): report=PATH (written once: at the cut, or at exit), arm_lo, arm_hi,
 * flash_lo, flash_hi (the range whose stores are tracked), cut (0: never; measure only),
 * log_arm (1: log every store into the arming range).
 *
 * Report lines: `armed ADDR`, then (log_arm) for every store into the arming range `arm COUNT
 * ADDR`,
 * then `cut COUNT PC LAST_STORE_ADDR LAST_STORE_SIZE
 * LAST_STORE_COUNT` or `end COUNT LAST_STORE_COUNT STORES`.
 *
 * The plugin API is C and stable: the few declarations it uses are written out here, so no
 * QEMU development header is needed.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };

typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*insn_cb)(unsigned int vcpu, void *userdata);
typedef void (*mem_cb)(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr,
                       void *userdata);
typedef void (*exit_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, insn_cb cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, mem_cb cb,
                                      enum qemu_plugin_cb_flags flags,
                                      enum qemu_plugin_mem_rw rw, void *userdata);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, exit_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static FILE *report;
static uint64_t arm_lo, arm_hi, flash_lo, flash_hi, cut, log_arm;
static bool armed;
static uint64_t count;
static uint64_t last_store_addr, last_store_size, last_store_count, stores;

static void on_insn(unsigned int vcpu, void *userdata)
{
    (void)vcpu;
    if (!armed)
        return;
    count++;
    if (cut != 0 && count == cut) {
        fprintf(report, "cut %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                count, (uint64_t)(uintptr_t)userdata, last_store_addr, last_store_size,
                last_store_count);
        fclose(report);
        report = NULL;
        /* The power is gone: this vCPU never runs again; the launcher saves and kills. */
        for (;;)
            pause();
    }
}

static void on_store(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr,
                     void *userdata)
{
    (void)vcpu;
    (void)userdata;
    /* Asked for stores only, but QEMU 7.2 calls back for loads too: filter here. */
    if (!qemu_plugin_mem_is_store(info))
        return;
    if (!armed) {
        if (vaddr < arm_lo || vaddr >= arm_hi)
            return;
        armed = true;
        fprintf(report, "armed %" PRIu64 "\n", vaddr);
    }
    if (log_arm && vaddr >= arm_lo && vaddr < arm_hi)
        fprintf(report, "arm %" PRIu64 " %" PRIu64 "\n", count, vaddr);
    if (vaddr >= flash_lo && vaddr < flash_hi) {
        last_store_addr = vaddr;
        last_store_size = 1u << qemu_plugin_mem_size_shift(info);
        last_store_count = count;
        stores++;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        void *pc = (void *)(uintptr_t)qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_insn, QEMU_PLUGIN_CB_NO_REGS, pc);
        qemu_plugin_register_vcpu_mem_cb(insn, on_store, QEMU_PLUGIN_CB_NO_REGS,
                                         QEMU_PLUGIN_MEM_W, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    if (report == NULL)
        return;
    fprintf(report, "end %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", count, last_store_count,
            stores);
    fclose(report);
    report = NULL;
}

static bool parse(const char *arg, const char *key, uint64_t *out)
{
    size_t len = strlen(key);
    if (strncmp(arg, key, len) != 0 || arg[len] != '=')
        return false;
    *out = strtoull(arg + len + 1, NULL, 0);
    return true;
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "report=", 7) == 0)
            path = argv[i] + 7;
        else if (!parse(argv[i], "arm_lo", &arm_lo) && !parse(argv[i], "arm_hi", &arm_hi) &&
                 !parse(argv[i], "flash_lo", &flash_lo) &&
                 !parse(argv[i], "flash_hi", &flash_hi) && !parse(argv[i], "cut", &cut) &&
                 !parse(argv[i], "log_arm", &log_arm)) {
            fprintf(stderr, "instruction_cut: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    if (path == NULL || arm_hi <= arm_lo) {
        fprintf(stderr, "instruction_cut: report=PATH and arm_lo < arm_hi are required\n");
        return -1;
    }
    report = fopen(path, "w");
    if (report == NULL) {
        perror("instruction_cut: report");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
