// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin for scripts/cost-profile.sh: how many times each
 * translation block of the guest's kernel half ran, and how many
 * instructions it holds.  At exit it writes "<vaddr> <insns> <runs>" per
 * block that ran to the file named by its "out" argument.
 *
 * Built by scripts/cost-profile.sh against QEMU 7.2 (Debian 12): the API
 * it uses is declared in qemu_plugin_v1.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_v1.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t runs;	/* QEMU adds 1 here each time the block runs */
};

static struct block **blocks;
static size_t nr_blocks, max_blocks;
static const char *out_path = "tb_insns.out";

/* Kernel half only: L1's kernel and modules (L2's code is not profiled). */
#define KERNEL_HALF 0xffff800000000000ull

static void translated(uint64_t id, struct qemu_plugin_tb *tb)
{
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
	struct block *b;

	if (vaddr < KERNEL_HALF)
		return;
	if (nr_blocks == max_blocks) {
		max_blocks = max_blocks ? 2 * max_blocks : 65536;
		blocks = realloc(blocks, max_blocks * sizeof(*blocks));
		if (!blocks)
			abort();
	}
	/* One per translation: a block translated again counts apart. */
	b = calloc(1, sizeof(*b));
	if (!b)
		abort();
	b->vaddr = vaddr;
	b->insns = qemu_plugin_tb_n_insns(tb);
	blocks[nr_blocks++] = b;
	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
						 &b->runs, 1);
}

static void write_out(uint64_t id, void *userdata)
{
	FILE *f = fopen(out_path, "w");
	size_t i;

	if (!f) {
		perror(out_path);
		return;
	}
	for (i = 0; i < nr_blocks; i++)
		if (blocks[i]->runs)
			fprintf(f, "%llx %llu %llu\n",
				(unsigned long long)blocks[i]->vaddr,
				(unsigned long long)blocks[i]->insns,
				(unsigned long long)blocks[i]->runs);
	fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(uint64_t id,
					   const struct qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			out_path = argv[i] + 4;
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, write_out, NULL);
	return 0;
}
