/*
 * corrupt.c: a program written from kho.h alone, built with
 *
 *     cc corrupt.c $(pkg-config --cflags --libs kho) -o corrupt
 *
 * against an installed libkho.a (any page size: the installed header
 * carries the archive's). It plays both kernels on a small RAM buffer of
 * its own, damages the handover in two ways a previous kernel's bug could,
 * and prints the typed reason kho gives for each: what is wrong and where.
 * Exits 0 when both are refused with the expected kind and the intact
 * handover imports.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kho.h>

#define RAM_BASE 0x80000000ull
#define RAM_PAGES 512ull
#define SCRATCH_PAGES 64ull

struct ram {
	uint8_t *bytes;
	uint8_t used[RAM_PAGES];
};

static void *phys_to_virt(void *ctx, uint64_t pa, uint64_t len)
{
	struct ram *r = ctx;
	uint64_t size = RAM_PAGES * KHO_PAGE_SIZE;
	if (pa < RAM_BASE || pa - RAM_BASE > size || len > size - (pa - RAM_BASE))
		return NULL;
	return r->bytes + (pa - RAM_BASE);
}

/* First fit of naturally aligned blocks. */
static int alloc_pages(void *ctx, uint32_t order, uint64_t *pa_out)
{
	struct ram *r = ctx;
	uint64_t n = 1ull << order;
	for (uint64_t first = 0; first + n <= RAM_PAGES; first += n) {
		uint64_t i = 0;
		while (i < n && !r->used[first + i])
			i++;
		if (i < n)
			continue;
		memset(r->used + first, 1, n);
		memset(r->bytes + first * KHO_PAGE_SIZE, 0, n * KHO_PAGE_SIZE);
		*pa_out = RAM_BASE + first * KHO_PAGE_SIZE;
		return 0;
	}
	return -KHO_ENOMEM;
}

static void free_pages(void *ctx, uint64_t pa, uint32_t order)
{
	struct ram *r = ctx;
	memset(r->used + (pa - RAM_BASE) / KHO_PAGE_SIZE, 0, 1ull << order);
}

static void show(const char *what, int rc, const struct kho_error *e)
{
	printf("%s: %d (%s)\n", what, rc, kho_strerror(rc));
	printf("  kind %s, field \"%s\"", e->kind, e->field);
	if (e->has & KHO_ERROR_HAS_NODE)
		printf(", node %#llx", (unsigned long long)e->node);
	if (e->has & KHO_ERROR_HAS_LEVEL)
		printf(", level %u", e->level);
	if (e->has & KHO_ERROR_HAS_INDEX)
		printf(", index %llu", (unsigned long long)e->index);
	if (e->has & KHO_ERROR_HAS_PA)
		printf(", pa %#llx", (unsigned long long)e->pa);
	printf("\n  %s\n", e->message);
}

int main(void)
{
	if (kho_page_size() != KHO_PAGE_SIZE) {
		fprintf(stderr, "kho.h describes %llu-byte pages, libkho.a %llu\n",
			(unsigned long long)KHO_PAGE_SIZE, (unsigned long long)kho_page_size());
		return 1;
	}
	printf("kho %s (header %d.%d.%d), %llu-byte pages\n", kho_version(), KHO_VERSION_MAJOR,
	       KHO_VERSION_MINOR, KHO_VERSION_PATCH, (unsigned long long)KHO_PAGE_SIZE);

	static struct ram ram;
	ram.bytes = aligned_alloc(KHO_PAGE_SIZE, RAM_PAGES * KHO_PAGE_SIZE);
	if (!ram.bytes)
		return 2;
	struct kho_platform platform = {&ram, phys_to_virt, alloc_pages, free_pages, NULL, 4};
	struct kho_scratch scratch = {RAM_BASE, SCRATCH_PAGES * KHO_PAGE_SIZE};
	memset(ram.used, 1, SCRATCH_PAGES); /* this kernel never allocates from scratch */

	/* Kernel A: the tree's root is the first page kho_out_new takes. */
	uint64_t root = 0, folio = 0;
	struct kho_out *out = NULL;
	struct kho_data data;
	struct kho_error err;
	alloc_pages(&ram, 0, &root);
	free_pages(&ram, root, 0);
	int rc = kho_out_new(&platform, &scratch, 1, KHO_ROOT_PLAIN, &out, &err);
	if (rc == 0)
		rc = alloc_pages(&ram, 2, &folio);
	if (rc == 0)
		rc = kho_preserve_folio(out, folio, 2);
	if (rc == 0)
		rc = kho_out_finish(out, &data);
	if (rc != 0) {
		fprintf(stderr, "kernel A: %s\n", kho_strerror(rc));
		return 1;
	}

	int failures = 0;
	struct kho_in *in = NULL;

	/* 1. A table slot pointing into the middle of a page. */
	uint64_t *slots = phys_to_virt(&ram, root, KHO_PAGE_SIZE);
	uint64_t slot = 0;
	while (slot < KHO_PAGE_SIZE / 8 && slots[slot] == 0)
		slot++;
	slots[slot] += 64;
	rc = kho_in_import(&platform, &data, &in, &err);
	show("tree slot misaligned", rc, &err);
	failures += rc != -KHO_EINVAL || strcmp(err.kind, "tree_node_misaligned") != 0 || err.node != root ||
		    err.index != slot;
	slots[slot] -= 64;

	/* 2. The root FDT's compatible of a version this library cannot read. */
	char *fdt = phys_to_virt(&ram, data.fdt_addr, data.fdt_size);
	char *v4 = NULL;
	for (uint64_t i = 0; i + 6 <= data.fdt_size && !v4; i++)
		if (memcmp(fdt + i, KHO_COMPAT_V4, 6) == 0)
			v4 = fdt + i;
	if (v4) {
		v4[5] = '7';
		rc = kho_in_import(&platform, &data, &in, &err);
		show("root compatible kho-v7", rc, &err);
		failures += rc != -KHO_EINVAL || strcmp(err.kind, "bad_compatible") != 0;
		v4[5] = '4';
	} else {
		failures++;
	}

	/* Intact again: it imports, and the folio comes back. */
	rc = kho_in_import(&platform, &data, &in, &err);
	if (rc == 0)
		rc = kho_restore_folio(in, folio, 2);
	printf("intact handover: %s\n", kho_strerror(rc));
	failures += rc != 0;
	kho_in_finish(in);
	free(ram.bytes);
	printf("%s\n", failures ? "FAILED" : "corrupt handovers refused with their typed reason");
	return failures != 0;
}
