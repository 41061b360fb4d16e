/*
 * bad_input.c: every export of kho.h given NULL pointers, zero or huge
 * sizes, misaligned addresses, orders and enum values out of range, and
 * handles after they were freed, returns the documented -errno. Run under
 * ASan and UBSan by .ci/c-tests and `cargo test -p kho-ffi --test c`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "kho.h"

#define BASE 0x40000000ull
#define SIZE (16ull << 20)
#define MAX_ORDER 10

static int passed, failed;

#define RC(expr, want)                                                                       \
	do {                                                                                 \
		long got_ = (long)(expr);                                                    \
		if (got_ == (long)(want)) {                                                  \
			passed++;                                                            \
		} else {                                                                     \
			failed++;                                                            \
			fprintf(stderr, "%s:%d: %s = %ld, want %ld\n", __FILE__, __LINE__, #expr, \
				got_, (long)(want));                                         \
		}                                                                            \
	} while (0)

#define OK(expr) RC(expr, 0)

static int count_cb(void *arg, uint64_t pa, uint32_t order)
{
	(void)pa;
	(void)order;
	++*(int *)arg;
	return 0;
}

static int stop_cb(void *arg, uint64_t pa, uint32_t order)
{
	(void)arg;
	(void)pa;
	(void)order;
	return 42;
}

static int range_stop(void *arg, uint64_t pa, uint64_t len)
{
	(void)arg;
	(void)pa;
	(void)len;
	return -7;
}

static int entry_stop(void *arg, const void *entry, size_t size, uint64_t pa)
{
	(void)arg;
	(void)entry;
	(void)size;
	(void)pa;
	return 5;
}

static int array_stop(void *arg, uint64_t pos, uint64_t raw)
{
	(void)arg;
	(void)pos;
	(void)raw;
	return 9;
}

static void pa_sink(void *arg, uint64_t pa)
{
	(void)arg;
	(void)pa;
}

static void platform_checks(struct arena *a)
{
	struct kho_platform p = arena_platform(a);
	struct kho_scratch scratch = {BASE, 1 << 20};
	struct kho_out *out = (struct kho_out *)&p; /* overwritten with NULL on failure */

	RC(kho_out_new(NULL, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	RC(out == NULL, 1);
	RC(kho_out_new(&p, &scratch, 1, KHO_ROOT_PLAIN, NULL, NULL), -KHO_EINVAL);
	struct kho_platform q = p;
	q.phys_to_virt = NULL;
	RC(kho_out_new(&q, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	q = p;
	q.alloc_pages = NULL;
	RC(kho_out_new(&q, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	q = p;
	q.free_pages = NULL;
	RC(kho_out_new(&q, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	q = p;
	q.max_order = KHO_ORDER_MAX + 1;
	RC(kho_out_new(&q, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	q.max_order = UINT32_MAX;
	RC(kho_out_new(&q, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	RC(kho_out_new(&p, &scratch, 1, 2, &out, NULL), -KHO_EINVAL);
	RC(kho_out_new(&p, &scratch, 1, UINT32_MAX, &out, NULL), -KHO_EINVAL);
	RC(kho_out_new(&p, NULL, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	RC(kho_out_new(&p, &scratch, SIZE_MAX, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	RC(kho_out_new(&p, (const struct kho_scratch *)((char *)&scratch + 4), 1, KHO_ROOT_PLAIN, &out, NULL),
	   -KHO_EINVAL);
	struct kho_scratch bad = {BASE + 100, 4096};
	RC(kho_out_new(&p, &bad, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	bad.addr = BASE;
	bad.size = 0;
	RC(kho_out_new(&p, &bad, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_EINVAL);
	/* Allocation failures surface as -ENOMEM, with nothing leaked. */
	a->fail_after = 0;
	RC(kho_out_new(&p, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_ENOMEM);
	a->fail_after = 1;
	RC(kho_out_new(&p, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL), -KHO_ENOMEM);
	a->fail_after = -1;
	RC(a->outstanding, 0);
	/* NULL scratch with a count of zero is fine, as is the composite root. */
	OK(kho_out_new(&p, NULL, 0, KHO_ROOT_COMPOSITE, &out, NULL));
	kho_out_destroy(out);
	RC(a->outstanding, 0);
	kho_out_destroy(NULL);
	kho_in_finish(NULL);
	kho_in_destroy(NULL);
	kho_block_set_free(NULL);
	kho_block_restored_free(NULL);
	kho_array_free(NULL);
	OK(kho_block_set_destroy(NULL, NULL));
	OK(kho_array_destroy(NULL, NULL));
}

/* Returns a finished handover of one folio, one vmalloc area, one block
 * set and one array, after checking the outgoing side's refusals. */
struct state {
	uint64_t folio, vblock[3], head, blob;
	struct kho_vmalloc area;
	struct kho_array_desc adesc;
	struct kho_data data;
};

static void outgoing_checks(struct arena *a, struct state *s)
{
	struct kho_platform p = arena_platform(a);
	struct kho_scratch scratch = {BASE, 1 << 20};
	struct kho_out *out = NULL;
	OK(kho_out_new(&p, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL));
	OK(arena_alloc(a, 2, &s->folio));

	RC(kho_preserve_folio(NULL, s->folio, 2), -KHO_EINVAL);
	RC(kho_preserve_folio(out, s->folio + 4096, 2), -KHO_EINVAL);  /* misaligned */
	RC(kho_preserve_folio(out, s->folio + 1, 0), -KHO_EINVAL);
	RC(kho_preserve_folio(out, s->folio, MAX_ORDER + 1), -KHO_ERANGE);
	RC(kho_preserve_folio(out, s->folio, KHO_ORDER_MAX + 1), -KHO_ERANGE);
	RC(kho_preserve_folio(out, s->folio, UINT32_MAX), -KHO_ERANGE);
	RC(kho_preserve_folio(out, BASE + SIZE, 0), -KHO_EINVAL);      /* not RAM */
	RC(kho_preserve_folio(out, UINT64_MAX & ~4095ull, 0), -KHO_EINVAL);
	RC(kho_preserve_folio(out, BASE, 0), -KHO_EBUSY);              /* scratch */
	RC(kho_unpreserve_folio(out, s->folio, 2), -KHO_ENOENT);
	RC(kho_unpreserve_folio(NULL, s->folio, 2), -KHO_EINVAL);
	RC(kho_unpreserve_folio(out, s->folio, 99), -KHO_ERANGE);
	OK(kho_preserve_folio(out, s->folio, 2));
	OK(kho_preserve_folio(out, s->folio, 2)); /* twice is fine */
	bool yes = false;
	OK(kho_is_preserved(out, s->folio, 2, &yes));
	RC(yes, 1);
	RC(kho_is_preserved(out, s->folio, 2, NULL), -KHO_EINVAL);
	RC(kho_is_preserved(NULL, s->folio, 2, &yes), -KHO_EINVAL);
	RC(kho_is_preserved(out, s->folio, 60, &yes), -KHO_ERANGE);

	RC(kho_preserve_pages(out, s->folio, 0), -KHO_EINVAL);
	RC(kho_preserve_pages(out, s->folio + 8, 1), -KHO_EINVAL);
	RC(kho_preserve_pages(out, s->folio, UINT64_MAX), -KHO_EINVAL);
	RC(kho_preserve_pages(out, BASE + SIZE - 4096, 2), -KHO_EINVAL);
	RC(kho_preserve_pages(NULL, s->folio, 1), -KHO_EINVAL);
	RC(kho_unpreserve_pages(out, s->folio + 8 * 4096, 1), -KHO_ENOENT);
	RC(kho_unpreserve_pages(out, s->folio, 0), -KHO_EINVAL);
	RC(kho_unpreserve_pages(NULL, s->folio, 1), -KHO_EINVAL);

	RC(kho_add_subtree(out, NULL, s->folio, 16), -KHO_EINVAL);
	RC(kho_add_subtree(NULL, "x", s->folio, 16), -KHO_EINVAL);
	RC(kho_add_subtree(out, "", s->folio, 16), -KHO_EINVAL);
	RC(kho_add_subtree(out, "\xff\xfe", s->folio, 16), -KHO_EINVAL);
	OK(kho_add_subtree(out, "blob", s->folio, 16));
	RC(kho_add_subtree(out, "blob", s->folio, 16), -KHO_EEXIST);
	RC(kho_remove_subtree(out, s->folio + 4096), -KHO_ENOENT);
	RC(kho_remove_subtree(NULL, s->folio), -KHO_EINVAL);
	/* Names until the root FDT (one page) is full: -ENOSPC. */
	char name[32];
	int rc = 0;
	for (int i = 0; i < 1000 && rc == 0; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		rc = kho_add_subtree(out, name, 0x1000 + (uint64_t)i, 1);
	}
	RC(rc, -KHO_ENOSPC);
	for (int i = 0; i < 1000; i++)
		kho_remove_subtree(out, 0x1000 + (uint64_t)i);

	int n = 0;
	RC(kho_out_walk_blocks(out, NULL, &n), -KHO_EINVAL);
	RC(kho_out_walk_blocks(NULL, count_cb, &n), -KHO_EINVAL);
	OK(kho_out_walk_blocks(out, count_cb, &n));
	RC(n, 2); /* the folio and the root FDT page */
	RC(kho_out_walk_blocks(out, stop_cb, NULL), 42);
	RC(kho_out_walk_ranges(out, NULL, NULL), -KHO_EINVAL);
	RC(kho_out_walk_ranges(out, range_stop, NULL), -7);

	/* vmalloc */
	struct kho_vmalloc desc;
	for (int i = 0; i < 3; i++)
		OK(arena_alloc(a, 1, &s->vblock[i]));
	uint64_t misaligned[1] = {s->vblock[0] + 4096};
	uint64_t zero[1] = {0};
	RC(kho_preserve_vmalloc(out, s->vblock, 3, 1, KHO_VMALLOC_ALLOC, NULL), -KHO_EINVAL);
	RC(kho_preserve_vmalloc(out, NULL, 3, 1, KHO_VMALLOC_ALLOC, &desc), -KHO_EINVAL);
	RC(kho_preserve_vmalloc(out, s->vblock, SIZE_MAX, 1, KHO_VMALLOC_ALLOC, &desc), -KHO_EINVAL);
	RC(kho_preserve_vmalloc(out, (const uint64_t *)((char *)s->vblock + 1), 1, 1, 0, &desc), -KHO_EINVAL);
	RC(kho_preserve_vmalloc(NULL, s->vblock, 3, 1, KHO_VMALLOC_ALLOC, &desc), -KHO_EINVAL);
	RC(kho_preserve_vmalloc(out, s->vblock, 3, 1, 4, &desc), -KHO_EOPNOTSUPP);
	RC(kho_preserve_vmalloc(out, s->vblock, 3, 1, 0xffff, &desc), -KHO_EOPNOTSUPP);
	RC(kho_preserve_vmalloc(out, s->vblock, 3, MAX_ORDER + 1, 0, &desc), -KHO_ERANGE);
	RC(kho_preserve_vmalloc(out, s->vblock, 3, UINT32_MAX, 0, &desc), -KHO_ERANGE);
	RC(kho_preserve_vmalloc(out, misaligned, 1, 1, 0, &desc), -KHO_EINVAL);
	RC(kho_preserve_vmalloc(out, zero, 1, 1, 0, &desc), -KHO_EINVAL);
	OK(kho_preserve_vmalloc(out, NULL, 0, 0, 0, &desc)); /* empty area */
	RC(desc.first, 0);
	OK(kho_preserve_vmalloc(out, s->vblock, 3, 1, KHO_VMALLOC_ALLOC, &s->area));
	RC(kho_unpreserve_vmalloc(out, NULL), -KHO_EINVAL);
	RC(kho_unpreserve_vmalloc(NULL, &s->area), -KHO_EINVAL);
	desc = s->area;
	desc.flags = 8;
	RC(kho_unpreserve_vmalloc(out, &desc), -KHO_EOPNOTSUPP);
	desc = s->area;
	desc.order = 200;
	RC(kho_unpreserve_vmalloc(out, &desc), -KHO_ERANGE);
	desc = s->area;
	desc.first += 8;
	RC(kho_unpreserve_vmalloc(out, &desc), -KHO_EINVAL);

	/* block sets */
	struct kho_block_set *set = NULL;
	RC(kho_block_set_new(out, 0, &set), -KHO_EINVAL);
	RC(kho_block_set_new(out, 4081, &set), -KHO_EINVAL);
	RC(kho_block_set_new(out, SIZE_MAX, &set), -KHO_EINVAL);
	RC(kho_block_set_new(NULL, 8, &set), -KHO_EINVAL);
	RC(kho_block_set_new(out, 8, NULL), -KHO_EINVAL);
	OK(kho_block_set_new(out, 8, &set));
	uint64_t e = 7, two[2] = {1, 2};
	RC(kho_block_push(set, &e, 8), -KHO_ENOSPC); /* no capacity yet */
	RC(kho_block_grow(out, set, SIZE_MAX), -KHO_ENOSPC);
	RC(kho_block_grow(out, set, (size_t)KHO_BLOCK_CHAIN_MAX * 510 + 1), -KHO_ENOSPC);
	RC(kho_block_grow(NULL, set, 1), -KHO_EINVAL);
	RC(kho_block_grow(out, NULL, 1), -KHO_EINVAL);
	a->fail_after = 0;
	RC(kho_block_grow(out, set, 1), -KHO_ENOMEM);
	a->fail_after = -1;
	OK(kho_block_grow(out, set, 600));
	RC(kho_block_shrink(out, set, 601), -KHO_EINVAL);
	OK(kho_block_shrink(out, set, 598));
	RC(kho_block_push(set, &e, 7), -KHO_EINVAL);
	RC(kho_block_push(set, &e, 0), -KHO_EINVAL);
	RC(kho_block_push(set, NULL, 8), -KHO_EINVAL);
	RC(kho_block_push(set, &e, SIZE_MAX), -KHO_EINVAL);
	RC(kho_block_push(NULL, &e, 8), -KHO_EINVAL);
	RC(kho_block_pop(set, NULL), -KHO_ENOENT);
	OK(kho_block_push(set, two, sizeof(two)));
	RC(kho_block_push(set, &e, 8), -KHO_ENOSPC);
	uint64_t popped = 0;
	OK(kho_block_pop(set, &popped));
	RC(popped != 0, 1);
	OK(kho_block_push(set, &e, 8));
	struct kho_block_info info;
	RC(kho_block_set_info(set, NULL), -KHO_EINVAL);
	RC(kho_block_set_info(NULL, &info), -KHO_EINVAL);
	OK(kho_block_set_info(set, &info));
	RC(info.len, 2);
	RC(info.entries_per_block, 510);
	RC(kho_block_set_for_each(set, NULL, NULL), -KHO_EINVAL);
	RC(kho_block_set_for_each(set, entry_stop, NULL), 5);
	s->head = info.head;
	/* A set handle is not an array handle, nor an out handle. */
	RC(kho_array_push(out, (struct kho_array *)set, 0, 3), -KHO_EINVAL);
	RC(kho_preserve_folio((struct kho_out *)set, s->folio, 2), -KHO_EINVAL);
	kho_block_set_free(set);
	RC(kho_block_push(set, &e, 8), -KHO_EINVAL); /* after free */
	RC(kho_block_set_info(set, &info), -KHO_EINVAL);

	/* arrays */
	struct kho_array *arr = NULL;
	RC(kho_array_new(NULL, &arr), -KHO_EINVAL);
	RC(kho_array_new(out, NULL), -KHO_EINVAL);
	OK(kho_array_new(out, &arr));
	RC(kho_array_push(out, arr, 5, 0), -KHO_EINVAL);       /* empty word */
	RC(kho_array_push(out, arr, 5, 2), -KHO_EINVAL);       /* malformed tag */
	RC(kho_array_push(out, arr, 5, 0x1004), -KHO_EINVAL);  /* misaligned pointer */
	RC(kho_array_push_value(out, arr, 5, UINT64_MAX), -KHO_ERANGE);
	RC(kho_array_push(NULL, arr, 5, 3), -KHO_EINVAL);
	RC(kho_array_push(out, NULL, 5, 3), -KHO_EINVAL);
	OK(kho_array_push_value(out, arr, 5, 1));
	RC(kho_array_push_value(out, arr, 5, 1), -KHO_EINVAL); /* not ascending */
	RC(kho_array_push_value(out, arr, 4, 1), -KHO_EINVAL);
	uint64_t words[3] = {3, 0, 0x2000};
	RC(kho_array_extend(out, arr, NULL, 3), -KHO_EINVAL);
	RC(kho_array_extend(out, arr, words, SIZE_MAX), -KHO_EINVAL);
	OK(kho_array_extend(out, arr, words, 3));
	uint64_t badw[1] = {6};
	RC(kho_array_extend(out, arr, badw, 1), -KHO_EINVAL);
	OK(kho_array_push(out, arr, UINT64_MAX, 0x3000));
	RC(kho_array_push_value(out, arr, 0, 1), -KHO_EINVAL);
	RC(kho_array_unpreserve(out, arr), -KHO_ENOENT);
	OK(kho_array_preserve(out, arr));
	RC(kho_array_preserve(out, arr), -KHO_EEXIST);
	RC(kho_array_descriptor(arr, NULL), -KHO_EINVAL);
	RC(kho_array_descriptor(NULL, &s->adesc), -KHO_EINVAL);
	OK(kho_array_descriptor(arr, &s->adesc));
	struct kho_array_info ainfo;
	RC(kho_array_get_info(arr, NULL), -KHO_EINVAL);
	OK(kho_array_get_info(arr, &ainfo));
	RC(ainfo.len, 4);
	RC(ainfo.preserved, 1);
	RC(kho_array_for_each(arr, NULL, NULL), -KHO_EINVAL);
	RC(kho_array_for_each(arr, array_stop, NULL), 9);
	RC(kho_array_destroy(NULL, arr), -KHO_EINVAL); /* preserved: needs out */
	kho_array_free(arr);
	RC(kho_array_get_info(arr, &ainfo), -KHO_EINVAL); /* after free */

	/* finish */
	OK(arena_alloc(a, 0, &s->blob));
	RC(kho_out_finish(out, NULL), -KHO_EINVAL); /* the handle survives */
	RC(kho_out_finish(NULL, &s->data), -KHO_EINVAL);
	OK(kho_out_finish(out, &s->data));
	/* After finish the handle is gone. */
	RC(kho_preserve_folio(out, s->folio, 2), -KHO_EINVAL);
	RC(kho_out_finish(out, &s->data), -KHO_EINVAL);
	kho_out_destroy(out); /* ignored */
}

static void incoming_checks(struct arena *a, struct state *s)
{
	struct kho_platform p = arena_platform(a);
	struct kho_in *in = NULL;
	RC(kho_in_import(NULL, &s->data, &in, NULL), -KHO_EINVAL);
	RC(kho_in_import(&p, NULL, &in, NULL), -KHO_EINVAL);
	RC(kho_in_import(&p, &s->data, NULL, NULL), -KHO_EINVAL);
	struct kho_data bad = s->data;
	bad.fdt_addr = 0;
	RC(kho_in_import(&p, &bad, &in, NULL), -KHO_EINVAL);
	bad = s->data;
	bad.fdt_addr = BASE + SIZE;
	RC(kho_in_import(&p, &bad, &in, NULL), -KHO_EINVAL);
	bad = s->data;
	bad.fdt_size = UINT64_MAX;
	RC(kho_in_import(&p, &bad, &in, NULL), -KHO_EINVAL);
	bad = s->data;
	bad.scratch_size = 15;
	RC(kho_in_import(&p, &bad, &in, NULL), -KHO_EINVAL);
	bad = s->data;
	bad.scratch_addr = UINT64_MAX - 15;
	RC(kho_in_import(&p, &bad, &in, NULL), -KHO_EINVAL);
	bad = s->data;
	bad.fdt_addr = s->folio; /* not an FDT */
	RC(kho_in_import(&p, &bad, &in, NULL), -KHO_EINVAL);
	struct kho_platform small = p;
	small.max_order = 1; /* the folio is order 2 */
	RC(kho_in_import(&small, &s->data, &in, NULL), -KHO_ERANGE);
	RC(in == NULL, 1);
	OK(kho_in_import(&p, &s->data, &in, NULL));

	struct kho_in_stats st;
	RC(kho_in_get_stats(in, NULL), -KHO_EINVAL);
	RC(kho_in_get_stats(NULL, &st), -KHO_EINVAL);
	OK(kho_in_get_stats(in, &st));
	char c[8];
	size_t len = 0;
	RC(kho_in_compatible(in, c, 6, &len), -KHO_ENOSPC);
	RC(len, 6);
	RC(kho_in_compatible(in, NULL, 8, NULL), -KHO_EINVAL);
	OK(kho_in_compatible(in, c, sizeof(c), NULL));
	struct kho_scratch sc[2];
	size_t nr = 0;
	RC(kho_in_scratch(in, sc, 0, &nr), -KHO_ENOSPC);
	RC(nr, 1);
	RC(kho_in_scratch(in, sc, 2, NULL), -KHO_EINVAL);
	OK(kho_in_scratch(in, sc, 2, &nr));
	RC(sc[0].addr, BASE);
	int n = 0;
	RC(kho_in_reserved(in, NULL, NULL), -KHO_EINVAL);
	RC(kho_in_reserved(NULL, count_cb, &n), -KHO_EINVAL);
	RC(kho_in_reserved(in, stop_cb, NULL), 42);
	RC(kho_in_unclaimed(in, NULL, NULL), -KHO_EINVAL);
	RC(kho_in_walk_blocks(in, NULL, NULL), -KHO_EINVAL);
	RC(kho_in_walk_blocks(in, stop_cb, NULL), 42);
	RC(kho_in_walk_ranges(in, NULL, NULL), -KHO_EINVAL);
	RC(kho_in_walk_ranges(in, range_stop, NULL), -7);

	uint64_t pa = 0, size = 0;
	RC(kho_retrieve_subtree(in, NULL, &pa, &size), -KHO_EINVAL);
	RC(kho_retrieve_subtree(in, "blob", NULL, &size), -KHO_EINVAL);
	RC(kho_retrieve_subtree(NULL, "blob", &pa, &size), -KHO_EINVAL);
	RC(kho_retrieve_subtree(in, "none", &pa, &size), -KHO_ENOENT);
	OK(kho_retrieve_subtree(in, "blob", &pa, NULL));
	RC(pa, s->folio);

	RC(kho_restore_folio(NULL, s->folio, 2), -KHO_EINVAL);
	RC(kho_restore_folio(in, s->folio, 1), -KHO_ENOENT);  /* wrong order */
	RC(kho_restore_folio(in, s->folio + 4096, 2), -KHO_EINVAL);
	RC(kho_restore_folio(in, s->folio, MAX_ORDER + 1), -KHO_ERANGE);
	RC(kho_restore_folio(in, s->folio, UINT32_MAX), -KHO_ERANGE);
	RC(kho_restore_pages(in, s->folio, 0), -KHO_EINVAL);
	RC(kho_restore_pages(in, s->folio + 1, 1), -KHO_EINVAL);
	RC(kho_restore_pages(in, s->folio, 3), -KHO_ENOENT); /* split differently */
	RC(kho_restore_pages(NULL, s->folio, 4), -KHO_EINVAL);
	OK(kho_restore_pages(in, s->folio, 4));
	RC(kho_restore_folio(in, s->folio, 2), -KHO_ENOENT); /* restored already */

	/* vmalloc */
	uint64_t nr_blocks = 0, blocks[3];
	struct kho_vmalloc desc = s->area;
	RC(kho_vmalloc_nr_blocks(in, NULL, &nr_blocks), -KHO_EINVAL);
	RC(kho_vmalloc_nr_blocks(in, &desc, NULL), -KHO_EINVAL);
	RC(kho_vmalloc_nr_blocks(NULL, &desc, &nr_blocks), -KHO_EINVAL);
	OK(kho_vmalloc_nr_blocks(in, &desc, &nr_blocks));
	RC(nr_blocks, 3);
	RC(kho_restore_vmalloc(in, &desc, blocks, 2, NULL), -KHO_ENOSPC);
	RC(kho_restore_vmalloc(in, &desc, NULL, 3, NULL), -KHO_EINVAL);
	RC(kho_restore_vmalloc(in, &desc, blocks, SIZE_MAX, NULL), -KHO_EINVAL);
	RC(kho_restore_vmalloc(in, NULL, blocks, 3, NULL), -KHO_EINVAL);
	RC(kho_restore_vmalloc_each(in, &desc, NULL, NULL, NULL), -KHO_EINVAL);
	desc.flags = 0x10;
	RC(kho_restore_vmalloc(in, &desc, blocks, 3, NULL), -KHO_EOPNOTSUPP);
	desc = s->area;
	desc.order = 11;
	RC(kho_restore_vmalloc(in, &desc, blocks, 3, NULL), -KHO_ERANGE);
	desc = s->area;
	desc.first += 16;
	RC(kho_restore_vmalloc(in, &desc, blocks, 3, NULL), -KHO_EINVAL);
	desc = s->area;
	desc.total_pages = 5; /* not whole blocks */
	RC(kho_restore_vmalloc(in, &desc, blocks, 3, NULL), -KHO_EINVAL);
	desc = s->area;
	desc.total_pages = 4; /* fewer blocks than listed */
	RC(kho_restore_vmalloc(in, &desc, blocks, 3, NULL), -KHO_EINVAL);
	desc = s->area;
	desc.first = s->blob; /* a page that was not preserved */
	RC(kho_restore_vmalloc(in, &desc, blocks, 3, NULL), -KHO_ENOENT);
	struct kho_vmalloc_area area;
	OK(kho_restore_vmalloc_each(in, &s->area, pa_sink, NULL, &area));
	RC(area.blocks, 3);
	RC(kho_restore_vmalloc(in, &s->area, blocks, 3, NULL), -KHO_ENOENT); /* twice */

	/* block sets */
	struct kho_block_restored *set = NULL;
	RC(kho_block_restore(in, s->head, 8, NULL), -KHO_EINVAL);
	RC(kho_block_restore(NULL, s->head, 8, &set), -KHO_EINVAL);
	RC(kho_block_restore(in, s->head, 0, &set), -KHO_EINVAL);
	RC(kho_block_restore(in, s->head + 8, 8, &set), -KHO_EINVAL);  /* misaligned */
	RC(kho_block_restore(in, s->blob, 8, &set), -KHO_EINVAL);      /* not preserved */
	RC(kho_block_restore(in, BASE + SIZE, 8, &set), -KHO_EINVAL);  /* not RAM */
	RC(kho_block_restore(in, s->head, 4000, &set), -KHO_EINVAL);   /* count above capacity */
	OK(kho_block_restore(in, 0, 8, &set)); /* empty set */
	kho_block_restored_free(set);
	OK(kho_block_restore(in, s->head, 8, &set));
	struct kho_block_info info;
	RC(kho_block_restored_info(set, NULL), -KHO_EINVAL);
	OK(kho_block_restored_info(set, &info));
	RC(info.len, 2);
	uint64_t buf[4] = {0};
	size_t got = 0;
	RC(kho_block_restored_read(set, NULL, 8, &got), -KHO_EINVAL);
	RC(kho_block_restored_read(set, buf, sizeof(buf), NULL), -KHO_EINVAL);
	OK(kho_block_restored_read(set, buf, 12, &got)); /* one whole entry fits */
	RC(got, 1);
	OK(kho_block_restored_read(set, buf, sizeof(buf), &got));
	RC(got, 2);
	RC(buf[0] == 1 && buf[1] == 7, 1);
	RC(kho_block_restored_for_each(set, NULL, NULL), -KHO_EINVAL);
	RC(kho_block_restored_for_each(set, entry_stop, NULL), 5);
	struct kho_block_restored *again = NULL;
	RC(kho_block_restore(in, s->head, 8, &again), -KHO_EINVAL); /* claimed already */
	RC(again == NULL, 1);
	kho_block_restored_free(set);
	RC(kho_block_restored_info(set, &info), -KHO_EINVAL); /* after free */

	/* arrays */
	struct kho_array *arr = NULL;
	struct kho_array_desc ad = s->adesc;
	RC(kho_array_restore(in, NULL, 16, &arr), -KHO_EINVAL);
	RC(kho_array_restore(in, &ad, 16, NULL), -KHO_EINVAL);
	RC(kho_array_restore(NULL, &ad, 16, &arr), -KHO_EINVAL);
	ad.magic ^= 1;
	RC(kho_array_restore(in, &ad, 16, &arr), -KHO_EINVAL);
	ad = s->adesc;
	ad.version = 2;
	RC(kho_array_restore(in, &ad, 16, &arr), -KHO_EOPNOTSUPP);
	ad = s->adesc;
	ad.reserved = 1;
	RC(kho_array_restore(in, &ad, 16, &arr), -KHO_EINVAL);
	ad = s->adesc;
	ad.first += 8;
	RC(kho_array_restore(in, &ad, 16, &arr), -KHO_EINVAL);
	RC(kho_array_restore(in, &s->adesc, 0, &arr), -KHO_EINVAL); /* more pages than allowed */
	OK(kho_array_restore(in, &s->adesc, 16, &arr));
	struct kho_array_info ai;
	OK(kho_array_get_info(arr, &ai));
	RC(ai.len, 4);
	RC(ai.last_position, UINT64_MAX);
	OK(kho_array_destroy(NULL, arr));

	n = 0;
	OK(kho_in_unclaimed(in, count_cb, &n));
	RC(n, 0);
	/* A handle of the wrong kind is refused. */
	RC(kho_restore_folio((struct kho_in *)arr, s->folio, 2), -KHO_EINVAL);
	kho_in_finish(in);
	RC(kho_restore_folio(in, s->folio, 2), -KHO_EINVAL); /* after finish */
	RC(kho_in_get_stats(in, &st), -KHO_EINVAL);
	kho_in_finish(in); /* ignored */
	kho_in_destroy(in);
}

int main(void)
{
	struct arena a;
	if (arena_init(&a, BASE, SIZE, MAX_ORDER) != 0)
		return 2;
	arena_mark(&a, BASE, (1 << 20) / KHO_PAGE_SIZE, 1); /* scratch: never allocated */
	struct state s;
	memset(&s, 0, sizeof(s));
	platform_checks(&a);
	outgoing_checks(&a, &s);
	incoming_checks(&a, &s);
	arena_fini(&a);
	printf("bad_input: %d passed, %d failed\n", passed, failed);
	fflush(stdout);
	return failed != 0;
}
