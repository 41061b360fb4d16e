/*
 * handover.c: a whole Kexec HandOver in C, on a platform of its own.
 *
 * "Kernel A" runs on a 64 MiB arena standing for RAM at physical address
 * 0x100000000. It preserves folios of several orders and a page range full
 * of pseudo-random bytes, a scattered vmalloc area, a block set of 80-byte
 * "session" entries and a sparse array, records all of it in a manifest
 * blob that it preserves and names as a subtree, and finishes with the
 * struct kho_data for its successor.
 *
 * "kexec": the RAM is copied to a fresh arena at another virtual address
 * (same physical addresses) and the old one is freed. "Kernel B" may only
 * allocate from the scratch area until it has imported the handover and
 * reserved what kho lists; then every other page is poisoned, as a buddy
 * allocator would reuse it. B restores everything, checks every byte by
 * checksum, frees it, and checks that no page is left over.
 *
 * Build (hosted archive; see README.md, "Linking kho from C"):
 *   cargo build -p kho-ffi --release
 *   cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/handover.c \
 *      examples/c/arena.c target/release/libkho_ffi.a -lpthread -ldl -lm \
 *      -o handover && ./handover
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "kho.h"

#define RAM_BASE 0x100000000ull
#if KHO_PAGE_SHIFT == 12
#define RAM_SIZE (64ull << 20)
#define MAX_ORDER 10
#else
/* 16 and 64 KiB pages (built with -DKHO_PAGE_16K or -DKHO_PAGE_64K against
 * the matching archive): enough pages for the same workload. */
#define RAM_SIZE (128ull << 20)
#define MAX_ORDER 9
#endif
#define SCRATCH_SIZE (4ull << 20) /* the first 4 MiB */
#define NR_FOLIOS 24
#define RANGE_PAGES 300
#define VM_BLOCKS 37
#define VM_ORDER 1
#define NR_SESSIONS 120
#define ARRAY_MAX_PAGES 64
#define MANIFEST_MAGIC 0x31534f4d45444f4bull /* "KODEMOS1" */

#define CHECK(expr)                                                               \
	do {                                                                      \
		int rc_ = (expr);                                                 \
		if (rc_ != 0) {                                                   \
			fprintf(stderr, "%s:%d: %s = %d\n", __FILE__, __LINE__, #expr, rc_); \
			exit(1);                                                  \
		}                                                                 \
	} while (0)

#define EXPECT(cond)                                                              \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                  \
		}                                                                 \
	} while (0)

/* One LUO-like session entry of a block set (80 bytes, 51 per block). */
struct session {
	uint64_t token;
	char name[64];
	uint64_t files;
};

/* The blob kernel A leaves for kernel B, named by the subtree "c-demo". */
struct manifest {
	uint64_t magic;
	struct {
		uint64_t pa, order, sum;
	} folios[NR_FOLIOS];
	uint64_t range_pa, range_pages, range_sum;
	struct kho_vmalloc area; /* the vmalloc-v1 descriptor, embedded */
	uint64_t area_sum;       /* over the blocks' bytes, in order */
	uint64_t sessions_head;  /* block-v1 head */
	uint64_t nr_sessions;
	struct kho_array_desc array; /* array-v1 descriptor */
	uint64_t array_len;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Checksum over a vmalloc area's blocks in order, as one buffer would be. */
static uint64_t area_checksum(const struct arena *a, const uint64_t *blocks, size_t n, uint32_t order)
{
	uint64_t h = 0;
	for (size_t i = 0; i < n; i++)
		h = h * 31 + arena_checksum(a, blocks[i], KHO_PAGE_SIZE << order);
	return h;
}

static struct kho_data kernel_a(struct arena *ram, struct kho_scratch scratch)
{
	struct kho_platform platform = arena_platform(ram);
	struct kho_out *out = NULL;
	struct manifest m;
	memset(&m, 0, sizeof(m));
	m.magic = MANIFEST_MAGIC;

	CHECK(kho_out_new(&platform, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL));

	/* Folios of random orders full of random bytes. */
	for (int i = 0; i < NR_FOLIOS; i++) {
		uint32_t order = (uint32_t)(rng() % 6);
		uint64_t pa;
		CHECK(arena_alloc(ram, order, &pa));
		arena_fill(ram, pa, KHO_PAGE_SIZE << order, rng());
		CHECK(kho_preserve_folio(out, pa, order));
		m.folios[i].pa = pa;
		m.folios[i].order = order;
		m.folios[i].sum = arena_checksum(ram, pa, KHO_PAGE_SIZE << order);
	}

	/* A range of pages that is not a power of two. */
	CHECK(arena_alloc(ram, 9, &m.range_pa));
	m.range_pages = RANGE_PAGES;
	arena_fill(ram, m.range_pa, RANGE_PAGES * KHO_PAGE_SIZE, rng());
	CHECK(kho_preserve_pages(out, m.range_pa, RANGE_PAGES));
	m.range_sum = arena_checksum(ram, m.range_pa, RANGE_PAGES * KHO_PAGE_SIZE);

	/* A vmalloc area: order-1 blocks scattered by allocations in between. */
	uint64_t blocks[VM_BLOCKS], gaps[VM_BLOCKS];
	for (int i = 0; i < VM_BLOCKS; i++) {
		CHECK(arena_alloc(ram, VM_ORDER, &blocks[i]));
		CHECK(arena_alloc(ram, 0, &gaps[i]));
		arena_fill(ram, blocks[i], KHO_PAGE_SIZE << VM_ORDER, rng());
	}
	for (int i = 0; i < VM_BLOCKS; i++)
		arena_free(ram, gaps[i], 0);
	CHECK(kho_preserve_vmalloc(out, blocks, VM_BLOCKS, VM_ORDER, KHO_VMALLOC_ALLOC, &m.area));
	m.area_sum = area_checksum(ram, blocks, VM_BLOCKS, VM_ORDER);

	/* A block set of sessions: reserve capacity, then write. */
	struct kho_block_set *sessions = NULL;
	CHECK(kho_block_set_new(out, sizeof(struct session), &sessions));
	CHECK(kho_block_grow(out, sessions, NR_SESSIONS));
	for (uint64_t i = 0; i < NR_SESSIONS; i++) {
		struct session s;
		memset(&s, 0, sizeof(s));
		s.token = 1000 + i;
		snprintf(s.name, sizeof(s.name), "session-%llu", (unsigned long long)i);
		s.files = i % 7;
		CHECK(kho_block_push(sessions, &s, sizeof(s)));
	}
	struct kho_block_info info;
	CHECK(kho_block_set_info(sessions, &info));
	/* (PAGE_SIZE - 16) / 80 entries per block: 51 with 4 KiB pages. */
	const uint64_t per_block = (KHO_PAGE_SIZE - 16) / sizeof(struct session);
	EXPECT(info.len == NR_SESSIONS && info.entries_per_block == per_block);
	EXPECT(info.blocks == (NR_SESSIONS + per_block - 1) / per_block);
	m.sessions_head = info.head;
	m.nr_sessions = info.len;
	kho_block_set_free(sessions); /* the pages are handed over */

	/* A sparse array: values at scattered positions, and a pointer. */
	struct kho_array *array = NULL;
	CHECK(kho_array_new(out, &array));
	for (uint64_t i = 0; i < 1000; i++)
		CHECK(kho_array_push_value(out, array, i * i * 7919, i));
	CHECK(kho_array_push(out, array, UINT64_MAX, m.range_pa));
	CHECK(kho_array_preserve(out, array));
	CHECK(kho_array_descriptor(array, &m.array));
	struct kho_array_info ainfo;
	CHECK(kho_array_get_info(array, &ainfo));
	m.array_len = ainfo.len;
	kho_array_free(array);

	/* The manifest itself: preserved, and named by a subtree. */
	uint64_t blob;
	CHECK(arena_alloc(ram, 0, &blob));
	memcpy(arena_va(ram, blob, sizeof(m)), &m, sizeof(m));
	CHECK(kho_preserve_folio(out, blob, 0));
	CHECK(kho_add_subtree(out, "c-demo", blob, sizeof(m)));
	EXPECT(kho_add_subtree(out, "c-demo", blob, sizeof(m)) == -KHO_EEXIST);

	struct kho_data data;
	CHECK(kho_out_finish(out, &data));
	printf("kernel A: %d folios, %d-page range, %d-block vmalloc area, %llu sessions, "
	       "%llu array entries in %llu pages; kho_data: fdt %#llx scratch %#llx+%llu\n",
	       NR_FOLIOS, RANGE_PAGES, VM_BLOCKS, (unsigned long long)m.nr_sessions,
	       (unsigned long long)m.array_len, (unsigned long long)ainfo.pages,
	       (unsigned long long)data.fdt_addr, (unsigned long long)data.scratch_addr,
	       (unsigned long long)data.scratch_size);
	return data;
}

struct boot {
	struct arena *ram;
	uint64_t reserved_pages;
};

static int reserve_block(void *arg, uint64_t pa, uint32_t order)
{
	struct boot *b = arg;
	arena_mark(b->ram, pa, (uint64_t)1 << order, 1);
	b->reserved_pages += (uint64_t)1 << order;
	return 0;
}

static int count_block(void *arg, uint64_t pa, uint32_t order)
{
	(void)pa;
	*(uint64_t *)arg += (uint64_t)1 << order;
	return 0;
}

static int check_session(void *arg, const void *entry, size_t size, uint64_t pa)
{
	uint64_t *next = arg;
	struct session s;
	(void)pa;
	if (size != sizeof(s))
		return -1;
	memcpy(&s, entry, sizeof(s));
	char name[64];
	snprintf(name, sizeof(name), "session-%llu", (unsigned long long)*next);
	if (s.token != 1000 + *next || strcmp(s.name, name) != 0 || s.files != *next % 7)
		return -2;
	(*next)++;
	return 0;
}

struct array_check {
	uint64_t seen;
	uint64_t range_pa;
};

static int check_array(void *arg, uint64_t pos, uint64_t raw)
{
	struct array_check *c = arg;
	if (pos == UINT64_MAX)
		return raw == c->range_pa ? 0 : -1;
	uint64_t i = c->seen++;
	return pos == i * i * 7919 && raw == ((i << 1) | 1) ? 0 : -2;
}

static void kernel_b(struct arena *ram, struct kho_data data, struct kho_scratch scratch)
{
	struct kho_platform platform = arena_platform(ram);
	struct kho_in *in = NULL;
	struct boot boot = {ram, 0};

	/* Until the handover is read, only the scratch area is free. */
	arena_mark(ram, RAM_BASE, ram->pages, 1);
	arena_mark(ram, scratch.addr, scratch.size / KHO_PAGE_SIZE, 0);

	CHECK(kho_in_import(&platform, &data, &in, NULL));
	CHECK(kho_in_reserved(in, reserve_block, &boot));
	struct kho_in_stats stats;
	CHECK(kho_in_get_stats(in, &stats));
	char compat[32];
	CHECK(kho_in_compatible(in, compat, sizeof(compat), NULL));
	EXPECT(strcmp(compat, KHO_COMPAT_V4) == 0);

	/* Boot done: every page neither reserved nor scratch is reused. */
	uint8_t *keep = calloc((size_t)ram->pages, 1);
	EXPECT(keep != NULL);
	memcpy(keep, ram->used, (size_t)ram->pages);
	arena_mark(ram, RAM_BASE, ram->pages, 0);
	for (uint64_t i = 0; i < ram->pages; i++) {
		uint64_t pa = RAM_BASE + i * KHO_PAGE_SIZE;
		int in_scratch = pa >= scratch.addr && pa < scratch.addr + scratch.size;
		if (keep[i] && !in_scratch)
			arena_mark(ram, pa, 1, 1);
		else
			memset(arena_va(ram, pa, KHO_PAGE_SIZE), 0x5a, KHO_PAGE_SIZE);
	}
	free(keep);
	ram->outstanding = boot.reserved_pages;

	uint64_t blob, blob_size;
	CHECK(kho_retrieve_subtree(in, "c-demo", &blob, &blob_size));
	EXPECT(blob_size == sizeof(struct manifest));
	EXPECT(kho_retrieve_subtree(in, "nothing", &blob, NULL) == -KHO_ENOENT);
	CHECK(kho_restore_folio(in, blob, 0));
	EXPECT(kho_restore_folio(in, blob, 0) == -KHO_ENOENT); /* only once */
	struct manifest m;
	memcpy(&m, arena_va(ram, blob, sizeof(m)), sizeof(m));
	EXPECT(m.magic == MANIFEST_MAGIC);

	for (int i = 0; i < NR_FOLIOS; i++) {
		uint64_t len = KHO_PAGE_SIZE << m.folios[i].order;
		CHECK(kho_restore_folio(in, m.folios[i].pa, (uint32_t)m.folios[i].order));
		EXPECT(arena_checksum(ram, m.folios[i].pa, len) == m.folios[i].sum);
		arena_free(ram, m.folios[i].pa, (uint32_t)m.folios[i].order);
	}

	CHECK(kho_restore_pages(in, m.range_pa, m.range_pages));
	EXPECT(arena_checksum(ram, m.range_pa, m.range_pages * KHO_PAGE_SIZE) == m.range_sum);

	uint64_t nr_blocks;
	CHECK(kho_vmalloc_nr_blocks(in, &m.area, &nr_blocks));
	EXPECT(nr_blocks == VM_BLOCKS);
	uint64_t blocks[VM_BLOCKS];
	struct kho_vmalloc_area area;
	CHECK(kho_restore_vmalloc(in, &m.area, blocks, VM_BLOCKS, &area));
	EXPECT(area.blocks == VM_BLOCKS && area.order == VM_ORDER && area.flags == KHO_VMALLOC_ALLOC);
	EXPECT(area_checksum(ram, blocks, VM_BLOCKS, VM_ORDER) == m.area_sum);
	for (int i = 0; i < VM_BLOCKS; i++)
		arena_free(ram, blocks[i], VM_ORDER);

	struct kho_block_restored *sessions = NULL;
	CHECK(kho_block_restore(in, m.sessions_head, sizeof(struct session), &sessions));
	uint64_t next = 0;
	CHECK(kho_block_restored_for_each(sessions, check_session, &next));
	EXPECT(next == m.nr_sessions);
	kho_block_restored_free(sessions);

	struct kho_array *array = NULL;
	CHECK(kho_array_restore(in, &m.array, ARRAY_MAX_PAGES, &array));
	struct array_check ac = {0, m.range_pa};
	CHECK(kho_array_for_each(array, check_array, &ac));
	EXPECT(ac.seen + 1 == m.array_len);
	CHECK(kho_array_destroy(NULL, array));

	/* The range and the manifest were restored: nothing is left over. */
	uint64_t unclaimed = 0;
	CHECK(kho_in_unclaimed(in, count_block, &unclaimed));
	EXPECT(unclaimed == 0);
	arena_free(ram, m.range_pa, 8);
	arena_free(ram, m.range_pa + 256 * KHO_PAGE_SIZE, 5);
	arena_free(ram, m.range_pa + 288 * KHO_PAGE_SIZE, 3);
	arena_free(ram, m.range_pa + 296 * KHO_PAGE_SIZE, 2);
	arena_free(ram, blob, 0);
	kho_in_finish(in);
	EXPECT(ram->outstanding == 0);
	printf("kernel B: imported %llu blocks (%llu pages, %llu tree pages), reserved %llu pages; "
	       "restored and verified everything; no page left over\n",
	       (unsigned long long)stats.blocks, (unsigned long long)stats.pages,
	       (unsigned long long)stats.tree_pages, (unsigned long long)boot.reserved_pages);
}

int main(void)
{
	struct arena a, b;
	CHECK(arena_init(&a, RAM_BASE, RAM_SIZE, MAX_ORDER));
	struct kho_scratch scratch = {RAM_BASE, SCRATCH_SIZE};
	arena_mark(&a, scratch.addr, scratch.size / KHO_PAGE_SIZE, 1); /* A never uses it */

	struct kho_data data = kernel_a(&a, scratch);

	/* kexec: same physical addresses, another virtual address. */
	CHECK(arena_init(&b, RAM_BASE, RAM_SIZE, MAX_ORDER));
	memcpy(b.ram, a.ram, RAM_SIZE);
	EXPECT(b.ram != a.ram);
	memset(a.ram, 0xa5, RAM_SIZE);
	arena_fini(&a);

	kernel_b(&b, data, scratch);
	arena_fini(&b);
	printf("handover OK\n");
	return 0;
}
