/*
 * luo.c: the LUO and memfd readers of kho.h on a handover a C program
 * wrote byte by byte.
 *
 * "Kernel A" lays out the Live Update Orchestrator's state by hand, with
 * kho's generic primitives only (folios, block sets, a vmalloc area, a
 * subtree), as Linux 7.2 does: the "LUO" blob (luo-v5), a session block
 * set of 80-byte entries, a file block set per session of 64-byte entries,
 * an FLB region, and for each "memfd-v2" file a 48-byte descriptor whose
 * folio list is a vmalloc area of 16-byte entries (pfn and flags, page
 * offset). Its memfds hold a known byte pattern, one with a hole.
 *
 * "Kernel B" reads it back through kho_luo_*() and kho_memfd_*(): names,
 * tokens, sizes, positions, seals, folios and every byte, first looking
 * only (nothing may stay claimed), then restoring and freeing everything
 * (no page may be left over). Then each bad input, applied to a fresh copy
 * of A's memory, must fail with its own error kind and field and leave
 * the claims as they were.
 *
 * Runs at 4, 16 and 64 KiB pages (-DKHO_PAGE_16K / -DKHO_PAGE_64K against
 * the matching archive).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "kho.h"

#define RAM_BASE 0x100000000ull
#if KHO_PAGE_SHIFT == 12
#define RAM_SIZE (64ull << 20)
#define MAX_ORDER 10
#else
#define RAM_SIZE (128ull << 20)
#define MAX_ORDER 9
#endif
#define SCRATCH_SIZE (4ull << 20)
#define LIVEUPDATE_NUM 3

/* The luo-v5 and memfd-v2 wire layouts (ABI.md section 7), packed. */
struct luo_ser {
	char compatible[8];
	uint64_t liveupdate_num;
	uint64_t sessions_pa;
	uint64_t flbs_pa;
} KHO_PACKED;

struct luo_session_ser {
	char name[64];
	uint64_t files;
	uint64_t count;
} KHO_PACKED;

struct luo_file_ser {
	char compatible[48];
	uint64_t data;
	uint64_t token;
} KHO_PACKED;

struct luo_flb_header_ser {
	uint64_t pgcnt;
	uint64_t count;
} KHO_PACKED;

struct luo_flb_ser {
	char name[48];
	uint64_t data;
	uint64_t count;
} KHO_PACKED;

struct memfd_ser {
	uint64_t pos;
	uint64_t size;
	uint32_t seals;
	uint32_t flags;
	uint64_t nr_folios;
	struct kho_vmalloc folios;
} KHO_PACKED;

struct memfd_folio_ser {
	uint64_t pfn_flags; /* pfn in bits 0..51, flags in 52..63 */
	uint64_t index;
} KHO_PACKED;

_Static_assert(sizeof(struct luo_ser) == 32, "luo_ser");
_Static_assert(sizeof(struct luo_session_ser) == 80, "luo_session_ser");
_Static_assert(sizeof(struct luo_file_ser) == 64, "luo_file_ser");
_Static_assert(sizeof(struct luo_flb_ser) == 64, "luo_flb_ser");
_Static_assert(sizeof(struct memfd_ser) == 48, "memfd_ser");
_Static_assert(sizeof(struct memfd_folio_ser) == 16, "memfd_folio_ser");

#define F_SEAL_SEAL 0x1u
#define F_SEAL_GROW 0x4u
#define F_SEAL_WRITE 0x8u
#define FOLIO_DIRTY 1u
#define FOLIO_UPTODATE 2u

/* The memfds kernel A preserves: folios at page offsets (order, flags). */
#define MAX_FOLIOS 4
struct memfd_spec {
	const char *session;
	uint64_t token;
	uint64_t size, pos;
	uint32_t seals;
	int nr;
	struct {
		uint64_t index;
		uint32_t order;
		uint16_t flags;
	} folio[MAX_FOLIOS];
};

/* vm0: a file with a hole at page 2 and a partial last page; a sealed
 * file in one order-2 folio. vm1: an empty file. */
static const struct memfd_spec MEMFDS[] = {
	{"vm0", 10, 3 * KHO_PAGE_SIZE + 100, 4096, F_SEAL_GROW, 3,
	 {{0, 0, FOLIO_DIRTY | FOLIO_UPTODATE}, {1, 0, FOLIO_UPTODATE}, {3, 0, FOLIO_DIRTY | FOLIO_UPTODATE}}},
	{"vm0", 11, 4 * KHO_PAGE_SIZE, 0, F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_WRITE, 1,
	 {{0, 2, FOLIO_DIRTY | FOLIO_UPTODATE}}},
	{"vm1", 0x7fffffffffffffffull, 0, 0, 0, 0, {{0, 0, 0}}},
};
#define NR_MEMFDS (sizeof(MEMFDS) / sizeof(MEMFDS[0]))
/* Session order in the chain, and their files (memfds plus one file of a
 * handler kho does not know). */
static const char *const SESSIONS[] = {"vm0", "vm1", "idle"};
#define NR_SESSIONS 3
#define OTHER_TOKEN 12
#define OTHER_DATA 0x1234ull

/* Byte `off` of memfd `m`: what B must read back (holes read as 0). */
static uint8_t pattern(size_t m, uint64_t off)
{
	return (uint8_t)(off * 7 + m * 13 + (off >> 9) + 1);
}

static int in_hole(const struct memfd_spec *s, uint64_t off)
{
	uint64_t page = off / KHO_PAGE_SIZE;
	for (int i = 0; i < s->nr; i++)
		if (page >= s->folio[i].index && page < s->folio[i].index + (1ull << s->folio[i].order))
			return 0;
	return 1;
}

/* What A left, for B's checks and the bad cases. */
struct layout {
	uint64_t blob, flbs, sessions_head;
	uint64_t files_head[NR_SESSIONS];
	uint64_t desc[NR_MEMFDS];
	uint64_t folio_pa[NR_MEMFDS][MAX_FOLIOS];
};

static void push_file(struct kho_out *out, struct kho_block_set *set, const char *compat, uint64_t data,
		      uint64_t token)
{
	struct luo_file_ser f;
	memset(&f, 0, sizeof(f));
	snprintf(f.compatible, sizeof(f.compatible), "%s", compat);
	f.data = data;
	f.token = token;
	CHECK(kho_block_grow(out, set, 1));
	CHECK(kho_block_push(set, &f, sizeof(f)));
}

static uint64_t preserve_memfd(struct arena *ram, struct kho_out *out, size_t m, struct layout *l)
{
	const struct memfd_spec *s = &MEMFDS[m];
	struct memfd_ser d;
	memset(&d, 0, sizeof(d));
	d.pos = s->pos;
	d.size = s->size;
	d.seals = s->seals;
	d.nr_folios = (uint64_t)s->nr;

	/* The folios, filled with the pattern up to the file size. */
	for (int i = 0; i < s->nr; i++) {
		uint64_t pa, bytes = KHO_PAGE_SIZE << s->folio[i].order;
		CHECK(arena_alloc(ram, s->folio[i].order, &pa));
		uint8_t *va = arena_va(ram, pa, bytes);
		for (uint64_t b = 0; b < bytes; b++) {
			uint64_t off = s->folio[i].index * KHO_PAGE_SIZE + b;
			va[b] = off < s->size ? pattern(m, off) : 0;
		}
		CHECK(kho_preserve_folio(out, pa, s->folio[i].order));
		l->folio_pa[m][i] = pa;
	}
	/* The folio list: a vmalloc area of order-0 pages. */
	if (s->nr > 0) {
		uint64_t list;
		CHECK(arena_alloc(ram, 0, &list));
		struct memfd_folio_ser *e = arena_va(ram, list, KHO_PAGE_SIZE);
		for (int i = 0; i < s->nr; i++) {
			uint64_t pfn = l->folio_pa[m][i] >> KHO_PAGE_SHIFT;
			e[i].pfn_flags = pfn | ((uint64_t)s->folio[i].flags << 52);
			e[i].index = s->folio[i].index;
		}
		struct kho_vmalloc area;
		CHECK(kho_preserve_vmalloc(out, &list, 1, 0, KHO_VMALLOC_ALLOC, &area));
		memcpy(&d.folios, &area, sizeof(area));
	}
	uint64_t desc;
	CHECK(arena_alloc(ram, 0, &desc));
	memcpy(arena_va(ram, desc, sizeof(d)), &d, sizeof(d));
	CHECK(kho_preserve_folio(out, desc, 0));
	l->desc[m] = desc;
	return desc;
}

static struct kho_data kernel_a(struct arena *ram, struct kho_scratch scratch, struct layout *l)
{
	struct kho_platform platform = arena_platform(ram);
	struct kho_out *out = NULL;
	CHECK(kho_out_new(&platform, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL));

	struct kho_block_set *sessions = NULL;
	CHECK(kho_block_set_new(out, sizeof(struct luo_session_ser), &sessions));
	for (int s = 0; s < NR_SESSIONS; s++) {
		struct kho_block_set *files = NULL;
		CHECK(kho_block_set_new(out, sizeof(struct luo_file_ser), &files));
		for (size_t m = 0; m < NR_MEMFDS; m++)
			if (strcmp(MEMFDS[m].session, SESSIONS[s]) == 0)
				push_file(out, files, KHO_COMPAT_MEMFD_V2, preserve_memfd(ram, out, m, l),
					  MEMFDS[m].token);
		if (s == 0)
			push_file(out, files, "other-v1", OTHER_DATA, OTHER_TOKEN);
		struct kho_block_info info;
		CHECK(kho_block_set_info(files, &info));
		kho_block_set_free(files);
		l->files_head[s] = info.head;

		struct luo_session_ser e;
		memset(&e, 0, sizeof(e));
		snprintf(e.name, sizeof(e.name), "%s", SESSIONS[s]);
		e.files = info.head;
		e.count = info.len;
		CHECK(kho_block_grow(out, sessions, 1));
		CHECK(kho_block_push(sessions, &e, sizeof(e)));
	}
	struct kho_block_info info;
	CHECK(kho_block_set_info(sessions, &info));
	kho_block_set_free(sessions);
	l->sessions_head = info.head;

	/* The FLB region: one page, one entry. */
	CHECK(arena_alloc(ram, 0, &l->flbs));
	struct luo_flb_header_ser h = {1, 1};
	struct luo_flb_ser flb;
	memset(&flb, 0, sizeof(flb));
	snprintf(flb.name, sizeof(flb.name), "iommu");
	flb.data = 0xabcd;
	flb.count = 2;
	memcpy(arena_va(ram, l->flbs, sizeof(h)), &h, sizeof(h));
	memcpy(arena_va(ram, l->flbs + sizeof(h), sizeof(flb)), &flb, sizeof(flb));
	CHECK(kho_preserve_folio(out, l->flbs, 0));

	/* The blob, named by the subtree "LUO". */
	struct luo_ser blob = {"luo-v5", LIVEUPDATE_NUM, l->sessions_head, l->flbs};
	CHECK(arena_alloc(ram, 0, &l->blob));
	memcpy(arena_va(ram, l->blob, sizeof(blob)), &blob, sizeof(blob));
	CHECK(kho_preserve_folio(out, l->blob, 0));
	CHECK(kho_add_subtree(out, KHO_LUO_SUBTREE, l->blob, sizeof(blob)));

	struct kho_data data;
	CHECK(kho_out_finish(out, &data));
	return data;
}

static int count_block(void *arg, uint64_t pa, uint32_t order)
{
	(void)pa;
	*(uint64_t *)arg += (uint64_t)1 << order;
	return 0;
}

static uint64_t unclaimed_pages(const struct kho_in *in)
{
	uint64_t n = 0;
	CHECK(kho_in_unclaimed(in, count_block, &n));
	return n;
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

/* Kernel B's boot: a copy of A's RAM, the handover imported, what it
 * lists reserved, every other page poisoned as a reused page would be. */
static struct kho_in *boot_b(struct arena *ram, const uint8_t *image, struct kho_data data,
			     struct kho_scratch scratch, struct kho_platform *platform)
{
	struct kho_in *in = NULL;
	struct boot boot = {ram, 0};
	CHECK(arena_init(ram, RAM_BASE, RAM_SIZE, MAX_ORDER));
	memcpy(ram->ram, image, RAM_SIZE);
	arena_mark(ram, RAM_BASE, ram->pages, 1);
	arena_mark(ram, scratch.addr, scratch.size / KHO_PAGE_SIZE, 0);
	*platform = arena_platform(ram);
	CHECK(kho_in_import(platform, &data, &in, NULL));
	CHECK(kho_in_reserved(in, reserve_block, &boot));
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
	return in;
}

/* Every file of the state, checked against what A wrote. */
static void check_luo(const struct kho_luo *luo, const struct layout *l, uint32_t restored)
{
	struct kho_luo_info info;
	CHECK(kho_luo_get_info(luo, &info));
	EXPECT(info.blob == l->blob && info.liveupdate_num == LIVEUPDATE_NUM);
	EXPECT(info.sessions_pa == l->sessions_head && info.flbs_pa == l->flbs);
	EXPECT(info.nr_sessions == NR_SESSIONS && info.nr_files == NR_MEMFDS + 1);
	EXPECT(info.nr_flbs == 1 && info.flbs_pgcnt == 1 && info.session_blocks == 1);
	EXPECT(info.restored == restored);

	for (uint64_t s = 0; s < NR_SESSIONS; s++) {
		struct kho_luo_session session;
		CHECK(kho_luo_get_session(luo, s, &session));
		EXPECT(strcmp(session.name, SESSIONS[s]) == 0 && session.name_len == strlen(SESSIONS[s]));
		EXPECT(session.files_pa == l->files_head[s]);
		uint64_t found;
		CHECK(kho_luo_find_session(luo, SESSIONS[s], &found));
		EXPECT(found == s);
		uint64_t expect_files = s == 0 ? 3 : s == 1 ? 1 : 0;
		EXPECT(session.nr_files == expect_files && session.file_blocks == (expect_files ? 1u : 0u));
		for (uint64_t f = 0; f < session.nr_files; f++) {
			struct kho_luo_file file;
			CHECK(kho_luo_get_file(luo, s, f, &file));
			if (s == 0 && f == 2) {
				EXPECT(strcmp(file.compatible, "other-v1") == 0);
				EXPECT(file.token == OTHER_TOKEN && file.data == OTHER_DATA);
				continue;
			}
			size_t m = s == 0 ? f : 2;
			EXPECT(strcmp(file.compatible, KHO_COMPAT_MEMFD_V2) == 0);
			EXPECT(file.token == MEMFDS[m].token && file.data == l->desc[m]);
		}
		struct kho_luo_file none;
		EXPECT(kho_luo_get_file(luo, s, session.nr_files, &none) == -KHO_ENOENT);
	}
	struct kho_luo_session none;
	EXPECT(kho_luo_get_session(luo, NR_SESSIONS, &none) == -KHO_ENOENT);
	uint64_t idx;
	EXPECT(kho_luo_find_session(luo, "vm2", &idx) == -KHO_ENOENT);
	struct kho_luo_flb flb;
	CHECK(kho_luo_get_flb(luo, 0, &flb));
	EXPECT(strcmp(flb.name, "iommu") == 0 && flb.data == 0xabcd && flb.count == 2);
	EXPECT(kho_luo_get_flb(luo, 1, &flb) == -KHO_ENOENT);
}

/* One memfd, its folios and every byte. */
static void check_memfd(struct kho_in *in, const struct kho_memfd *mfd, size_t m, const struct layout *l)
{
	const struct memfd_spec *s = &MEMFDS[m];
	struct kho_memfd_info info;
	CHECK(kho_memfd_get_info(mfd, &info));
	EXPECT(info.desc == l->desc[m] && info.size == s->size && info.pos == s->pos);
	EXPECT(info.seals == s->seals && info.flags == 0 && info.nr_folios == (uint64_t)s->nr);
	uint64_t pages = 0, dirty = 0, uptodate = 0;
	for (int i = 0; i < s->nr; i++) {
		struct kho_memfd_folio f;
		CHECK(kho_memfd_get_folio(mfd, (uint64_t)i, &f));
		EXPECT(f.pa == l->folio_pa[m][i] && f.pfn == f.pa >> KHO_PAGE_SHIFT);
		EXPECT(f.index == s->folio[i].index && f.order == s->folio[i].order && f.flags == s->folio[i].flags);
		pages += 1ull << f.order;
		dirty += (f.flags & KHO_MEMFD_FOLIO_DIRTY) != 0;
		uptodate += (f.flags & KHO_MEMFD_FOLIO_UPTODATE) != 0;
	}
	EXPECT(info.pages == pages && info.dirty == dirty && info.uptodate == uptodate);
	struct kho_memfd_folio none;
	EXPECT(kho_memfd_get_folio(mfd, (uint64_t)s->nr, &none) == -KHO_ENOENT);

	/* The bytes, read in odd-sized pieces: pattern, holes as zeros. */
	uint8_t buf[1000];
	uint64_t off = 0, got = 0;
	for (;;) {
		CHECK(kho_memfd_read(in, mfd, off, buf, sizeof(buf), &got));
		if (got == 0)
			break;
		for (uint64_t b = 0; b < got; b++) {
			uint8_t want = in_hole(s, off + b) ? 0 : pattern(m, off + b);
			EXPECT(buf[b] == want);
		}
		off += got;
	}
	EXPECT(off == s->size);
	EXPECT(kho_memfd_read(in, mfd, s->size + 1, buf, sizeof(buf), &got) == -KHO_EINVAL);
	struct kho_error err;
	CHECK(kho_in_last_error(in, &err));
	EXPECT(strcmp(err.kind, "memfd_beyond") == 0);
}

static void good(const uint8_t *image, struct kho_data data, struct kho_scratch scratch, const struct layout *l)
{
	struct arena ram;
	struct kho_platform platform;
	struct kho_in *in = boot_b(&ram, image, data, scratch, &platform);
	uint64_t before = unclaimed_pages(in);

	uint64_t blob, size;
	CHECK(kho_retrieve_subtree(in, KHO_LUO_SUBTREE, &blob, &size));
	EXPECT(blob == l->blob && size == sizeof(struct luo_ser));

	/* Looking claims nothing. */
	struct kho_luo *luo = NULL;
	CHECK(kho_luo_inspect(in, blob, size, &luo));
	EXPECT(unclaimed_pages(in) == before);
	check_luo(luo, l, 0);
	for (size_t m = 0; m < NR_MEMFDS; m++) {
		struct kho_memfd *mfd = NULL;
		CHECK(kho_memfd_inspect(in, l->desc[m], &mfd));
		EXPECT(unclaimed_pages(in) == before);
		check_memfd(in, mfd, m, l);
		CHECK(kho_memfd_finish(in, mfd));
	}
	CHECK(kho_luo_finish(in, luo));
	EXPECT(unclaimed_pages(in) == before);

	/* Restoring, then giving everything back. */
	CHECK(kho_luo_restore(in, blob, size, &luo));
	EXPECT(unclaimed_pages(in) < before);
	check_luo(luo, l, 1);
	/* Restored once only: its pages are claimed now. */
	struct kho_luo *again = NULL;
	EXPECT(kho_luo_restore(in, blob, size, &again) == -KHO_EINVAL && again == NULL);
	struct kho_error err;
	CHECK(kho_in_last_error(in, &err));
	EXPECT(strcmp(err.kind, "luo_blob_not_preserved") == 0 && strcmp(err.field, "blob.blob address") == 0);
	EXPECT((err.has & KHO_ERROR_HAS_PA) && err.pa == blob);
	/* Given back, it restores again. */
	kho_luo_destroy(in, luo);
	EXPECT(unclaimed_pages(in) == before);
	CHECK(kho_luo_restore(in, blob, size, &luo));

	/* Every memfd restored, its bytes checked and freed. */
	for (size_t m = 0; m < NR_MEMFDS; m++) {
		struct kho_memfd *mfd = NULL;
		CHECK(kho_memfd_restore(in, l->desc[m], &mfd));
		struct kho_memfd_info info;
		CHECK(kho_memfd_get_info(mfd, &info));
		EXPECT(info.restored == 1);
		check_memfd(in, mfd, m, l);
		CHECK(kho_memfd_free(in, mfd));
	}
	CHECK(kho_luo_finish(in, luo));
	printf("read %zu memfds in %d sessions (%llu unclaimed pages before, %llu after)\n", NR_MEMFDS,
	       NR_SESSIONS, (unsigned long long)before, (unsigned long long)unclaimed_pages(in));
	EXPECT(unclaimed_pages(in) == 0);
	kho_in_finish(in);
	EXPECT(ram.outstanding == 0);
	arena_fini(&ram);
}

/* A bad input: a mutation of A's memory, the call that must fail, its
 * errno, kind, field, and the claims as they were. */
enum target { LUO_RESTORE, LUO_INSPECT, MEMFD_RESTORE };

struct bad {
	const char *name;
	enum target target;
	size_t memfd;
	int rc;
	const char *kind;
	const char *field;
};

static void mutate(const struct bad *b, uint8_t *ram, const struct layout *l)
{
#define AT(pa) (ram + ((pa) - RAM_BASE))
	if (strcmp(b->name, "luo compatible") == 0) {
		memcpy(AT(l->blob), "luo-v4\0", 8);
	} else if (strcmp(b->name, "file chain outside RAM") == 0) {
		/* session 0's `files`, in the first session block after its
		 * 16-byte header */
		uint64_t outside = RAM_BASE + RAM_SIZE + 16 * KHO_PAGE_SIZE;
		memcpy(AT(l->sessions_head + 16 + 64), &outside, 8);
	} else if (strcmp(b->name, "session count") == 0) {
		uint64_t count = 2;
		memcpy(AT(l->sessions_head + 16 + 80 + 72), &count, 8);
	} else if (strcmp(b->name, "session name unterminated") == 0) {
		memset(AT(l->sessions_head + 16 + 2 * 80), 'x', 64);
	} else if (strcmp(b->name, "unknown seals") == 0) {
		uint32_t seals = 0x40;
		memcpy(AT(l->desc[0] + 16), &seals, 4);
	} else if (strcmp(b->name, "folio not preserved") == 0) {
		/* the second folio entry's pfn: a page of the scratch area */
		struct memfd_ser d;
		memcpy(&d, AT(l->desc[0]), sizeof(d));
		EXPECT(d.folios.first != 0);
		/* the chunk's first block address follows its 8-byte `next` */
		uint64_t list;
		memcpy(&list, AT(d.folios.first + 8), 8);
		uint64_t pfn = RAM_BASE >> KHO_PAGE_SHIFT;
		memcpy(AT(list + 16), &pfn, 8);
	}
#undef AT
}

static const struct bad BAD[] = {
	{"luo compatible", LUO_RESTORE, 0, -KHO_EINVAL, "luo_compatible", "blob.compatible"},
	{"luo compatible", LUO_INSPECT, 0, -KHO_EINVAL, "luo_compatible", "blob.compatible"},
	{"file chain outside RAM", LUO_RESTORE, 0, -KHO_EINVAL, "luo_files_not_ram", "session[0].files."},
	{"session count", LUO_RESTORE, 0, -KHO_EINVAL, "luo_session_count_mismatch", "session[1].count"},
	{"session name unterminated", LUO_INSPECT, 0, -KHO_EINVAL, "luo_session_unterminated", "session[2].name"},
	{"unknown seals", MEMFD_RESTORE, 0, -KHO_EOPNOTSUPP, "memfd_descriptor_unknown_bits", "desc.seals"},
	{"folio not preserved", MEMFD_RESTORE, 0, -KHO_EINVAL, "memfd_folio_not_preserved", "folio[1].pfn"},
};

static void bad(const uint8_t *image, struct kho_data data, struct kho_scratch scratch, const struct layout *l,
		const struct bad *b)
{
	uint8_t *copy = malloc(RAM_SIZE);
	EXPECT(copy != NULL);
	memcpy(copy, image, RAM_SIZE);
	mutate(b, copy, l);
	struct arena ram;
	struct kho_platform platform;
	struct kho_in *in = boot_b(&ram, copy, data, scratch, &platform);
	free(copy);
	uint64_t before = unclaimed_pages(in);
	int rc;
	if (b->target == MEMFD_RESTORE) {
		struct kho_memfd *mfd = (struct kho_memfd *)&rc; /* must be set to NULL */
		rc = kho_memfd_restore(in, l->desc[b->memfd], &mfd);
		EXPECT(mfd == NULL);
	} else {
		struct kho_luo *luo = (struct kho_luo *)&rc;
		rc = b->target == LUO_RESTORE ? kho_luo_restore(in, l->blob, sizeof(struct luo_ser), &luo)
					      : kho_luo_inspect(in, l->blob, sizeof(struct luo_ser), &luo);
		EXPECT(luo == NULL);
	}
	struct kho_error err;
	CHECK(kho_in_last_error(in, &err));
	if (rc != b->rc || strcmp(err.kind, b->kind) != 0 || strncmp(err.field, b->field, strlen(b->field)) != 0) {
		fprintf(stderr, "%s: rc %d kind %s field %s (%s); expected rc %d kind %s field %s\n", b->name, rc,
			err.kind, err.field, err.message, b->rc, b->kind, b->field);
		exit(1);
	}
	EXPECT(err.code == b->rc);
	EXPECT(unclaimed_pages(in) == before);
	printf("%s: %s at %s (%s)\n", b->name, err.kind, err.field, err.message);
	kho_in_destroy(in);
	arena_fini(&ram);
}

int main(void)
{
	struct arena a;
	struct layout l;
	memset(&l, 0, sizeof(l));
	CHECK(arena_init(&a, RAM_BASE, RAM_SIZE, MAX_ORDER));
	struct kho_scratch scratch = {RAM_BASE, SCRATCH_SIZE};
	arena_mark(&a, scratch.addr, scratch.size / KHO_PAGE_SIZE, 1);
	struct kho_data data = kernel_a(&a, scratch, &l);
	uint8_t *image = malloc(RAM_SIZE);
	EXPECT(image != NULL);
	memcpy(image, a.ram, RAM_SIZE);
	arena_fini(&a);

	good(image, data, scratch, &l);
	for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++)
		bad(image, data, scratch, &l, &BAD[i]);
	free(image);
	printf("luo OK\n");
	return 0;
}
