/* arena: see arena.h. */
#include "arena.h"

#include <stdlib.h>
#include <string.h>

int arena_init(struct arena *a, uint64_t base, uint64_t bytes, uint32_t max_order)
{
	memset(a, 0, sizeof(*a));
	a->pages = bytes / KHO_PAGE_SIZE;
	/* Aligned to the largest block, so that PA alignment is VA alignment. */
	size_t align = (size_t)KHO_PAGE_SIZE << max_order;
	a->ram = aligned_alloc(align, (size_t)(a->pages * KHO_PAGE_SIZE));
	a->used = calloc((size_t)a->pages, 1);
	if (!a->ram || !a->used) {
		free(a->ram);
		free(a->used);
		return -KHO_ENOMEM;
	}
	a->base = base;
	a->fail_after = -1;
	a->max_order = max_order;
	return 0;
}

void arena_fini(struct arena *a)
{
	free(a->ram);
	free(a->used);
	memset(a, 0, sizeof(*a));
}

void *arena_va(const struct arena *a, uint64_t pa, uint64_t len)
{
	uint64_t size = a->pages * KHO_PAGE_SIZE;
	if (pa < a->base || pa - a->base > size || len > size - (pa - a->base))
		return NULL;
	return a->ram + (pa - a->base);
}

int arena_alloc(struct arena *a, uint32_t order, uint64_t *pa)
{
	if (a->fail_after == 0 || order > a->max_order)
		return -KHO_ENOMEM;
	if (a->fail_after > 0)
		a->fail_after--;
	uint64_t n = (uint64_t)1 << order;
	for (uint64_t first = 0; first + n <= a->pages; first += n) {
		uint64_t i = 0;
		while (i < n && !a->used[first + i])
			i++;
		if (i < n)
			continue;
		memset(a->used + first, 1, (size_t)n);
		memset(a->ram + first * KHO_PAGE_SIZE, 0, (size_t)(n * KHO_PAGE_SIZE));
		a->outstanding += n;
		*pa = a->base + first * KHO_PAGE_SIZE;
		return 0;
	}
	return -KHO_ENOMEM;
}

void arena_free(struct arena *a, uint64_t pa, uint32_t order)
{
	uint64_t n = (uint64_t)1 << order;
	arena_mark(a, pa, n, 0);
	a->outstanding -= n;
}

void arena_mark(struct arena *a, uint64_t pa, uint64_t pages, int used)
{
	uint64_t first = (pa - a->base) / KHO_PAGE_SIZE;
	memset(a->used + first, used ? 1 : 0, (size_t)pages);
}

uint64_t arena_checksum(const struct arena *a, uint64_t pa, uint64_t len)
{
	const uint8_t *p = arena_va(a, pa, len);
	uint64_t h = 0xcbf29ce484222325ull;
	if (!p)
		return 0;
	for (uint64_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

void arena_fill(struct arena *a, uint64_t pa, uint64_t len, uint64_t seed)
{
	uint8_t *p = arena_va(a, pa, len);
	uint64_t x = seed | 1;
	for (uint64_t i = 0; p && i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

/* The callbacks kho calls, each given the arena as its context. */

static void *cb_phys_to_virt(void *ctx, uint64_t pa, uint64_t len)
{
	return arena_va(ctx, pa, len);
}

static int cb_alloc_pages(void *ctx, uint32_t order, uint64_t *pa_out)
{
	return arena_alloc(ctx, order, pa_out);
}

static void cb_free_pages(void *ctx, uint64_t pa, uint32_t order)
{
	arena_free(ctx, pa, order);
}

struct kho_platform arena_platform(struct arena *a)
{
	struct kho_platform p = {
		.ctx = a,
		.phys_to_virt = cb_phys_to_virt,
		.alloc_pages = cb_alloc_pages,
		.free_pages = cb_free_pages,
		.crosses_node = NULL,
		.max_order = a->max_order,
	};
	return p;
}
