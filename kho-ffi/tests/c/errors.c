/*
 * errors.c: what C gets besides -errno. kho_strerror(), the version macros
 * and kho_version(), the page size of header and archive, the typed error
 * records of a corrupt handover (kho_in_import's record) and of failing
 * calls on a handle (kho_out_last_error, kho_in_last_error), and the
 * setup_data and /chosen handoff calls. Built for 4, 16 and 64 KiB pages
 * (-DKHO_PAGE_16K, -DKHO_PAGE_64K against the matching archive).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "kho.h"

#if defined(KHO_PAGE_64K)
_Static_assert(KHO_PAGE_SIZE == 65536 && KHO_PAGE_SHIFT == 16 && KHO_ORDER_MAX == 48, "64 KiB pages");
#elif defined(KHO_PAGE_16K)
_Static_assert(KHO_PAGE_SIZE == 16384 && KHO_PAGE_SHIFT == 14 && KHO_ORDER_MAX == 50, "16 KiB pages");
#else
_Static_assert(KHO_PAGE_SIZE == 4096 && KHO_PAGE_SHIFT == 12 && KHO_ORDER_MAX == 52, "4 KiB pages");
#endif
_Static_assert(sizeof(struct kho_error) == 336, "struct kho_error");
_Static_assert(sizeof(struct kho_setup_data) == 16, "struct kho_setup_data");
_Static_assert(KHO_SETUP_KHO_LEN == 48 && KHO_SETUP_KEXEC_KHO == 10, "setup_data entry");

#define BASE 0x40000000ull
#define SIZE (16ull << 20)
#define SCRATCH (1ull << 20)

static int passed, failed;

#define EXPECT(cond)                                                               \
	do {                                                                       \
		if (cond) {                                                        \
			passed++;                                                  \
		} else {                                                           \
			failed++;                                                  \
			fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                  \
	} while (0)

static void print_error(const char *what, const struct kho_error *e)
{
	printf("%s: %s [%s] kind=%s field=\"%s\"", what, kho_strerror(e->code), e->message, e->kind, e->field);
	if (e->has & KHO_ERROR_HAS_PA)
		printf(" pa=%#llx", (unsigned long long)e->pa);
	if (e->has & KHO_ERROR_HAS_NODE)
		printf(" node=%#llx", (unsigned long long)e->node);
	if (e->has & KHO_ERROR_HAS_LEVEL)
		printf(" level=%u", e->level);
	if (e->has & KHO_ERROR_HAS_INDEX)
		printf(" index=%llu", (unsigned long long)e->index);
	if (e->has & KHO_ERROR_HAS_ORDER)
		printf(" order=%u", e->order);
	if (e->has & KHO_ERROR_HAS_VALUE)
		printf(" value=%#llx", (unsigned long long)e->value);
	printf("\n");
}

static void strerror_and_version(void)
{
	const int codes[] = {KHO_ENOENT, KHO_ENOMEM, KHO_EBUSY, KHO_EEXIST, KHO_EINVAL,
			     KHO_ENOSPC, KHO_ERANGE, KHO_EOPNOTSUPP, KHO_ENOTRECOVERABLE};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *s = kho_strerror(-codes[i]);
		EXPECT(s != NULL && strcmp(s, "unknown error") != 0);
		EXPECT(s == kho_strerror(codes[i]));
	}
	EXPECT(strcmp(kho_strerror(0), "success") == 0);
	EXPECT(strcmp(kho_strerror(-5), "unknown error") == 0);
	EXPECT(strstr(kho_strerror(-KHO_EINVAL), "corrupt") != NULL);

	char v[32];
	snprintf(v, sizeof(v), "%d.%d.%d", KHO_VERSION_MAJOR, KHO_VERSION_MINOR, KHO_VERSION_PATCH);
	EXPECT(strcmp(kho_version(), v) == 0);
	EXPECT(kho_page_size() == KHO_PAGE_SIZE);
	printf("kho %s, %llu-byte pages\n", kho_version(), (unsigned long long)kho_page_size());
}

/* A handover with one preserved folio; *root is the radix tree's root. */
static void make_handover(struct arena *a, struct kho_data *data, uint64_t *root, uint64_t *folio)
{
	struct kho_platform p = arena_platform(a);
	struct kho_scratch scratch = {BASE, SCRATCH};
	struct kho_out *out = NULL;
	struct kho_error e;
	/* arena_alloc is first-fit: the first page kho_out_new allocates (the
	 * tree's root) is the first free one now. */
	EXPECT(arena_alloc(a, 0, root) == 0);
	arena_free(a, *root, 0);
	EXPECT(kho_out_new(&p, &scratch, 1, KHO_ROOT_PLAIN, &out, &e) == 0);
	EXPECT(e.code == 0 && e.kind[0] == 0);
	EXPECT(kho_out_last_error(out, &e) == 0 && e.code == 0);

	/* A block in the scratch area: -EBUSY, recorded on the handle. */
	EXPECT(kho_preserve_folio(out, BASE, 0) == -KHO_EBUSY);
	EXPECT(kho_out_last_error(out, &e) == 0);
	print_error("preserve in scratch", &e);
	EXPECT(e.code == -KHO_EBUSY && strcmp(e.kind, "forbidden") == 0);
	EXPECT((e.has & (KHO_ERROR_HAS_PA | KHO_ERROR_HAS_ORDER)) == (KHO_ERROR_HAS_PA | KHO_ERROR_HAS_ORDER));
	EXPECT(e.pa == BASE && e.order == 0 && strstr(e.field, "scratch") != NULL);
	/* Argument errors record nothing: the record stays. */
	EXPECT(kho_preserve_folio(out, BASE, KHO_ORDER_MAX + 1) == -KHO_ERANGE);
	EXPECT(kho_out_last_error(out, &e) == 0 && strcmp(e.kind, "forbidden") == 0);
	EXPECT(kho_out_last_error(out, NULL) == -KHO_EINVAL);
	EXPECT(kho_out_last_error(NULL, &e) == -KHO_EINVAL);

	EXPECT(arena_alloc(a, 2, folio) == 0);
	EXPECT(kho_preserve_folio(out, *folio, 2) == 0);
	EXPECT(kho_out_finish(out, data) == 0);
}

static void corrupt_handover(struct arena *a)
{
	struct kho_platform p = arena_platform(a);
	struct kho_data data;
	uint64_t root, folio;
	struct kho_in *in = NULL;
	struct kho_error e;
	make_handover(a, &data, &root, &folio);

	/* Every slot of the root table made misaligned. */
	uint64_t *slots = arena_va(a, root, KHO_PAGE_SIZE);
	uint64_t first = KHO_PAGE_SIZE / 8;
	for (uint64_t i = 0; i < KHO_PAGE_SIZE / 8; i++) {
		if (slots[i] != 0) {
			first = i < first ? i : first;
			slots[i] += 8;
		}
	}
	EXPECT(first < KHO_PAGE_SIZE / 8);
	EXPECT(kho_in_import(&p, &data, &in, &e) == -KHO_EINVAL && in == NULL);
	print_error("corrupt handover (tree)", &e);
	EXPECT(e.code == -KHO_EINVAL && strcmp(e.kind, "tree_node_misaligned") == 0);
	const uint32_t where = KHO_ERROR_HAS_NODE | KHO_ERROR_HAS_LEVEL | KHO_ERROR_HAS_INDEX;
	EXPECT((e.has & where) == where);
	EXPECT(e.node == root && e.index == first && e.level >= 1);
	EXPECT(strstr(e.message, "radix tree node") != NULL);
	for (uint64_t i = 0; i < KHO_PAGE_SIZE / 8; i++)
		if (slots[i] != 0)
			slots[i] -= 8;

	/* A root compatible this build cannot read. */
	char *fdt = arena_va(a, data.fdt_addr, data.fdt_size);
	char *compat = NULL;
	for (uint64_t i = 0; i + 6 <= data.fdt_size && !compat; i++)
		if (memcmp(fdt + i, "kho-v4", 6) == 0)
			compat = fdt + i;
	EXPECT(compat != NULL);
	if (compat) {
		compat[5] = '9';
		EXPECT(kho_in_import(&p, &data, &in, &e) == -KHO_EINVAL);
		print_error("corrupt handover (compatible)", &e);
		EXPECT(strcmp(e.kind, "bad_compatible") == 0 && e.field[0] != 0);
		compat[5] = '4';
	}

	/* Intact, it imports; a failing restore is recorded on the handle. */
	EXPECT(kho_in_import(&p, &data, &in, &e) == 0 && e.code == 0);
	EXPECT(kho_in_last_error(in, &e) == 0 && e.code == 0 && e.kind[0] == 0);
	EXPECT(kho_restore_folio(in, folio, 1) == -KHO_ENOENT);
	EXPECT(kho_in_last_error(in, &e) == 0);
	print_error("restore at the wrong order", &e);
	EXPECT(e.code == -KHO_ENOENT && strcmp(e.kind, "not_preserved") == 0);
	EXPECT(e.pa == folio && e.order == 1);
	EXPECT(kho_restore_folio(in, folio, 2) == 0);
	arena_free(a, folio, 2);
	kho_in_finish(in);
}

static const unsigned char chosen_dtb[] = {
	0xd0, 0x0d, 0xfe, 0xed, 0x00, 0x00, 0x00, 0x93, 0x00, 0x00, 0x00, 0x38,
	0x00, 0x00, 0x00, 0x78, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x11,
	0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1b,
	0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03,
	0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x02,
	0x00, 0x00, 0x00, 0x01, 0x63, 0x68, 0x6f, 0x73, 0x65, 0x6e, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x09,
	0x23, 0x61, 0x64, 0x64, 0x72, 0x65, 0x73, 0x73, 0x2d, 0x63, 0x65, 0x6c,
	0x6c, 0x73, 0x00, 0x23, 0x73, 0x69, 0x7a, 0x65, 0x2d, 0x63, 0x65, 0x6c,
	0x6c, 0x73, 0x00
};

static void handoff(void)
{
	struct kho_data data = {0x123400000ull, KHO_PAGE_SIZE, 0x123400000ull + KHO_PAGE_SIZE, 32};
	struct kho_data back;
	struct kho_error e;
	unsigned char entry[64];
	size_t n = 0;
	uint64_t next = 1;
	EXPECT(kho_setup_data_write(&data, 0, entry, sizeof(entry), &n, &e) == 0 && n == KHO_SETUP_KHO_LEN);
	struct kho_setup_data h;
	memcpy(&h, entry, sizeof(h));
	EXPECT(h.next == 0 && h.type == KHO_SETUP_KEXEC_KHO && h.len == sizeof(struct kho_data));
	EXPECT(kho_setup_data_read(entry, n, &back, &next, &e) == 0 && next == 0);
	EXPECT(memcmp(&back, &data, sizeof(data)) == 0);
	entry[8] = 9;
	EXPECT(kho_setup_data_read(entry, n, &back, NULL, &e) == -KHO_EINVAL);
	EXPECT(strcmp(e.kind, "wrong_type") == 0 && e.value == 9);
	EXPECT(kho_setup_data_write(&data, 0, entry, 47, NULL, &e) == -KHO_EINVAL && strcmp(e.kind, "short") == 0);

	unsigned char dtb[sizeof(chosen_dtb) + 128];
	memset(dtb, 0, sizeof(dtb));
	memcpy(dtb, chosen_dtb, sizeof(chosen_dtb));
	EXPECT(kho_chosen_read(dtb, sizeof(dtb), &back, &e) == -KHO_ENOENT);
	EXPECT(kho_chosen_write(dtb, sizeof(chosen_dtb), &data, NULL, &e) == -KHO_ENOSPC);
	EXPECT(strcmp(e.kind, "no_room") == 0);
	size_t total = 0;
	EXPECT(kho_chosen_write(dtb, sizeof(dtb), &data, &total, &e) == 0);
	EXPECT(total == sizeof(chosen_dtb) + 2 * (12 + 16) + sizeof("linux,kho-fdt") + sizeof("linux,kho-scratch"));
	memset(&back, 0, sizeof(back));
	EXPECT(kho_chosen_read(dtb, total, &back, &e) == 0);
	EXPECT(memcmp(&back, &data, sizeof(data)) == 0);
	/* Big-endian cells: address 0x1_23400000 is 00 00 00 01 23 40 00 00. */
	const unsigned char cells[] = {0, 0, 0, 1, 0x23, 0x40, 0, 0};
	int found = 0;
	for (size_t i = 0; i + sizeof(cells) <= total; i++)
		found |= memcmp(dtb + i, cells, sizeof(cells)) == 0;
	EXPECT(found);
	struct kho_data bad = data;
	bad.fdt_addr = 0;
	EXPECT(kho_chosen_write(dtb, sizeof(dtb), &bad, NULL, &e) == -KHO_EINVAL);
	print_error("chosen write of a bad location", &e);
	EXPECT(strcmp(e.kind, "zero_address") == 0);
}

int main(void)
{
	struct arena a;
	if (arena_init(&a, BASE, SIZE, 4) != 0)
		return 2;
	arena_mark(&a, BASE, SCRATCH / KHO_PAGE_SIZE, 1); /* scratch: never allocated */
	strerror_and_version();
	corrupt_handover(&a);
	handoff();
	arena_fini(&a);
	printf("errors: %d passed, %d failed\n", passed, failed);
	return failed != 0;
}
