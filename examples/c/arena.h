/*
 * arena: a pretend machine's RAM for the kho C example and tests.
 *
 * A buffer of the C heap stands for physical memory starting at a pretend
 * physical address (never the buffer's virtual address), with a simple page
 * allocator of naturally aligned blocks. arena_platform() describes it to
 * kho as a struct kho_platform.
 */
#ifndef KHO_EXAMPLE_ARENA_H
#define KHO_EXAMPLE_ARENA_H

#include <stdint.h>

#include "kho.h"

struct arena {
	uint8_t *ram;          /* the RAM, page aligned */
	uint64_t base;         /* physical address of ram[0] */
	uint64_t pages;        /* size in pages */
	uint8_t *used;         /* one byte per page: non-zero = in use */
	uint64_t outstanding;  /* pages handed out by arena_alloc, not freed */
	long fail_after;       /* allocations left before they fail; -1: never */
	uint32_t max_order;    /* largest order allocated or preserved */
};

/* RAM of `bytes` (whole pages) at physical address `base`. 0 or -ENOMEM. */
int arena_init(struct arena *a, uint64_t base, uint64_t bytes, uint32_t max_order);
void arena_fini(struct arena *a);

/* The platform kho uses; a->... must outlive every handle made from it. */
struct kho_platform arena_platform(struct arena *a);

/* Pointer to `len` bytes at `pa`, or NULL if not all inside the arena. */
void *arena_va(const struct arena *a, uint64_t pa, uint64_t len);

/* Allocates 2^order zeroed, aligned pages; 0 or -ENOMEM. */
int arena_alloc(struct arena *a, uint32_t order, uint64_t *pa);
void arena_free(struct arena *a, uint64_t pa, uint32_t order);

/* Marks pages in use (or free) without zeroing them: boot-time bookkeeping. */
void arena_mark(struct arena *a, uint64_t pa, uint64_t pages, int used);

/* FNV-1a over `len` bytes at `pa` (0 if out of range). */
uint64_t arena_checksum(const struct arena *a, uint64_t pa, uint64_t len);

/* Fills `len` bytes at `pa` with bytes from a generator seeded by `seed`. */
void arena_fill(struct arena *a, uint64_t pa, uint64_t len, uint64_t seed);

#endif
