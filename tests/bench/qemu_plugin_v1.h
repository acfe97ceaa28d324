/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The part of QEMU's plugin API that tb_insns.c uses, declared as QEMU
 * 7.2's include/qemu/qemu-plugin.h (plugin API version 1) declares it:
 * Debian 12 ships the plugin loader in qemu-system-x86 but not the header.
 */
#ifndef QEMU_PLUGIN_V1_H
#define QEMU_PLUGIN_V1_H

#include <stddef.h>
#include <stdint.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
#define QEMU_PLUGIN_VERSION 1
/* enum qemu_plugin_op */
#define QEMU_PLUGIN_INLINE_ADD_U64 0

struct qemu_plugin_tb;
struct qemu_info_t;

void qemu_plugin_register_vcpu_tb_trans_cb(uint64_t id,
					   void (*cb)(uint64_t id,
						      struct qemu_plugin_tb *tb));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
					      int op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(uint64_t id,
				    void (*cb)(uint64_t id, void *userdata),
				    void *userdata);

#endif /* QEMU_PLUGIN_V1_H */
