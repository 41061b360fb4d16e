/*
 * producer.c: what a C bootloader needs to hand a handover to a next
 * x86-64 Linux kernel, through kho.h alone.
 *
 * The loader pieces: a bzImage header (parsed, and refused when it is not
 * a 64-bit bzImage), the memory layout of scratch, kernel window, initrd
 * and boot pages, the zero page (fields at their offsets), the entry stub
 * (its instructions where they belong), the plan rules and segment
 * batching, each bad case with its error kind.
 *
 * The payload writers on a kho_out: a memfd in a LUO session, self-test
 * data, a reserve_mem region, kexec-metadata; the handover is then
 * imported as the next kernel would and read back through the LUO and
 * memfd readers, byte for byte.
 *
 * 4 KiB pages (the x86 loader's facts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "kho.h"

#define MIB (1ull << 20)
#define RAM_BASE 0x100000000ull
#define RAM_SIZE (64ull << 20)
#define MAX_ORDER 10

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

#define IMAGE_LEN (5 * 512 + 100000)

/* A bzImage header: protocol 2.15, 64-bit entry, relocatable, 2 MiB
 * alignment, init_size 12.5 MiB, four setup sectors. */
static void make_bzimage(uint8_t *b)
{
	memset(b, 0, IMAGE_LEN);
	b[0x1f1] = 4;
	put16(b + 0x1fe, 0xaa55);
	b[0x201] = 0x6a;
	memcpy(b + 0x202, "HdrS", 4);
	put16(b + 0x206, 0x020f);
	b[0x211] = 1;
	put32(b + 0x230, 0x200000);
	b[0x234] = 1;
	put16(b + 0x236, 0x63);
	put32(b + 0x238, 2047);
	put64(b + 0x258, 0x1000000);
	put32(b + 0x260, 0xc7a000);
	for (size_t i = 5 * 512; i < IMAGE_LEN; i++)
		b[i] = (uint8_t)(i * 7 + 1);
}

static void expect_kind(const struct kho_error *e, const char *kind)
{
	if (strcmp(e->kind, kind) != 0) {
		fprintf(stderr, "error kind %s (%s), expected %s\n", e->kind, e->message, kind);
		exit(1);
	}
}

static void loader_pieces(void)
{
	static uint8_t image[IMAGE_LEN];
	struct kho_error err;
	struct kho_bzimage bz;
	make_bzimage(image);
	CHECK(kho_bzimage_parse(image, IMAGE_LEN, &bz, &err));
	EXPECT(bz.kernel_offset == 2560 && bz.kernel_len == 100000);
	EXPECT(bz.init_size == 0xc7a000 && bz.kernel_alignment == 2 * MIB && bz.relocatable);
	EXPECT(bz.version == 0x020f && bz.cmdline_size == 2047);
	image[0x236] = 0x62; /* no 64-bit entry */
	EXPECT(kho_bzimage_parse(image, IMAGE_LEN, &bz, &err) == -KHO_EINVAL);
	expect_kind(&err, "bad_image");
	image[0x236] = 0x63;

	/* The layout of a 1 GiB PC: scratch from 16 MiB. */
	struct kho_range ram[2] = {{0x1000, 0x9f000}, {MIB, 1024 * MIB}};
	struct kho_layout l;
	uint64_t auto_addr = UINT64_MAX;
	CHECK(kho_layout_new(ram, 2, image, IMAGE_LEN, 9 * MIB, 0, auto_addr, 96 * MIB, &l, &err));
	EXPECT(l.scratch.addr == 16 * MIB && l.scratch.size % (4 * MIB) == 0);
	EXPECT(l.load == 16 * MIB && l.kernel.start == 16 * MIB && l.kernel.end == 16 * MIB + 0xc7a000);
	EXPECT(l.initrd.start == 29 * MIB && l.initrd.end == 38 * MIB);
	EXPECT(l.boot.start == 38 * MIB && l.boot.end == 38 * MIB + 4 * 4096);
	EXPECT(l.scratch_free >= 96 * MIB);
	uint64_t arena;
	CHECK(kho_layout_place_arena(&l, ram, 2, 64 * MIB, &arena, &err));
	EXPECT(arena >= l.scratch.addr + l.scratch.size && arena % (4 * MIB) == 0);
	EXPECT(kho_layout_place_arena(&l, ram, 2, 2000 * MIB, &arena, &err) == -KHO_EINVAL);
	expect_kind(&err, "no_room");
	EXPECT(kho_layout_new(ram, 2, image, IMAGE_LEN, 0, 32 * MIB, auto_addr, 96 * MIB, &l, &err) == -KHO_EINVAL);
	expect_kind(&err, "scratch_too_small");
	EXPECT(kho_layout_new(ram, 2, image, IMAGE_LEN, 0, 0, 18 * MIB, 96 * MIB, &l, &err) == -KHO_EINVAL);
	expect_kind(&err, "scratch_misaligned");
	EXPECT(kho_layout_new(ram, 2, image, IMAGE_LEN, 0, 0, 1000 * MIB, 96 * MIB, &l, &err) == -KHO_EINVAL);
	expect_kind(&err, "scratch_not_ram");
	CHECK(kho_layout_new(ram, 2, image, IMAGE_LEN, 9 * MIB, 0, auto_addr, 96 * MIB, &l, &err));

	/* The zero page. */
	static uint8_t zp[KHO_BOOT_PARAMS_SIZE];
	struct kho_e820_entry map[2] = {{0, 0x9fc00, 1, 0}, {MIB, 1023 * MIB, 1, 0}};
	CHECK(kho_boot_params_write(image, IMAGE_LEN, l.load, l.boot.start + 4096, l.initrd.start, 9 * MIB, 0,
				    l.boot.start + 8192, map, 2, zp, &err));
	EXPECT(memcmp(zp + 0x202, "HdrS", 4) == 0);
	EXPECT(zp[0x210] == 0xff && (zp[0x211] & 1));
	EXPECT(le32(zp + 0x228) == (uint32_t)(l.boot.start + 4096));
	EXPECT(le32(zp + 0x218) == (uint32_t)l.initrd.start && le32(zp + 0x21c) == 9 * MIB);
	EXPECT(le64(zp + 0x250) == l.boot.start + 8192);
	EXPECT(zp[0x1e8] == 2 && le64(zp + 0x2d0 + 20) == MIB && le32(zp + 0x2d0 + 36) == 1);
	map[1].type_ = 99;
	EXPECT(kho_boot_params_write(image, IMAGE_LEN, l.load, 0, 0, 0, 0, 0, map, 2, zp, &err) == -KHO_EINVAL);
	EXPECT(kho_boot_params_write(image, IMAGE_LEN, l.load + 4096, 0, 0, 0, 0, 0, map, 1, zp, &err) ==
	       -KHO_EINVAL);

	/* The entry stub. */
	uint8_t stub[KHO_TRAMPOLINE_LEN];
	uint64_t at = l.boot.start + 3 * 4096;
	CHECK(kho_trampoline_write(at, l.load + 0x200, l.boot.start, at + 4096, stub, sizeof(stub), &err));
	EXPECT(stub[0] == 0xfa && stub[1] == 0xfc);         /* cli; cld */
	EXPECT(stub[0x31] == 0x48 && stub[0x32] == 0xbe);   /* mov rsi, imm64 */
	EXPECT(le64(stub + 0x33) == l.boot.start);
	EXPECT(le64(stub + 0x3d) == l.load + 0x200);
	EXPECT(stub[0x47] == 0xff && stub[0x48] == 0xe0);   /* jmp rax */
	EXPECT(le64(stub + 0x50 + 0x10) == 0x00af9a000000ffffull);
	EXPECT(kho_trampoline_write(at, 0, 0, at + 4096, stub, 16, &err) == -KHO_EINVAL);
	EXPECT(kho_trampoline_write(at + 8, 0, 0, at + 4096, stub, sizeof(stub), &err) == -KHO_EINVAL);

	/* Plan rules. */
	struct kho_scratch scratch = l.scratch;
	struct kho_segment_range segs[17];
	for (int i = 0; i < 17; i++)
		segs[i] = (struct kho_segment_range){(uint64_t)(200 + i) * MIB, 4096};
	CHECK(kho_plan_check(ram, 2, &scratch, 1, 96 * MIB, segs, 16, &err));
	EXPECT(kho_plan_check(ram, 2, &scratch, 1, 96 * MIB, segs, 17, &err) == -KHO_EINVAL);
	expect_kind(&err, "too_many_segments");
	segs[1].mem = segs[0].mem;
	EXPECT(kho_plan_check(ram, 2, &scratch, 1, 96 * MIB, segs, 2, &err) == -KHO_EINVAL);
	expect_kind(&err, "segments_overlap");
	segs[0] = (struct kho_segment_range){100 * MIB, 600 * MIB};
	EXPECT(kho_plan_check(ram, 2, &scratch, 1, 96 * MIB, segs, 1, &err) == -KHO_EINVAL);
	expect_kind(&err, "too_large");
	struct kho_range windows[1] = {l.initrd};
	CHECK(kho_plan_check_preserved(ram, 2, &scratch, 1, windows, 1, arena, 4096, &err));
	EXPECT(kho_plan_check_preserved(ram, 2, &scratch, 1, windows, 1, 0x8000, 4096, &err) == -KHO_EINVAL);
	expect_kind(&err, "preserved_low");
	EXPECT(kho_plan_check_preserved(ram, 2, &scratch, 1, windows, 1, l.scratch.addr, 4096, &err) ==
	       -KHO_EINVAL);
	expect_kind(&err, "preserved_in_scratch");

	struct kho_range runs[5] = {{0, 4096}, {4096, 8192}, {12288, 16384}, {1 << 20, (1 << 20) + 4096},
				    {2 << 20, (2 << 20) + 4096}};
	EXPECT(kho_plan_coalesce(runs, 5, 3) == 3);
	EXPECT(runs[0].start == 0 && runs[0].end == 16384);
	EXPECT(runs[1].start == 1 << 20 && runs[1].end == (1 << 20) + 4096);
	EXPECT(runs[2].start == 2 << 20);
	printf("loader pieces: ok\n");
}

static uint8_t file_byte(size_t i) { return (uint8_t)(i * 131 + 17); }

static int reserve_block(void *arg, uint64_t pa, uint32_t order)
{
	arena_mark(arg, pa, (uint64_t)1 << order, 1);
	return 0;
}

static void writers(void)
{
	struct arena ram;
	CHECK(arena_init(&ram, RAM_BASE, RAM_SIZE, MAX_ORDER));
	struct kho_scratch scratch = {RAM_BASE + 48 * MIB, 16 * MIB};
	arena_mark(&ram, scratch.addr, scratch.size / KHO_PAGE_SIZE, 1);
	struct kho_platform platform = arena_platform(&ram);
	struct kho_out *out = NULL;
	CHECK(kho_out_new(&platform, &scratch, 1, KHO_ROOT_PLAIN, &out, NULL));

	/* A memfd of 3 pages and 100 bytes at position 12345. */
	size_t len = 3 * KHO_PAGE_SIZE + 100;
	uint8_t *bytes = malloc(len);
	EXPECT(bytes != NULL);
	for (size_t i = 0; i < len; i++)
		bytes[i] = file_byte(i);
	uint64_t desc = 0, blob = 0, size = 0;
	CHECK(kho_memfd_write(out, bytes, len, 12345, 0, &desc));
	struct kho_luo_writer *w = NULL;
	uint64_t session = 99;
	CHECK(kho_luo_writer_new(out, 1, &w));
	CHECK(kho_luo_writer_session(w, out, "vm0", &session));
	EXPECT(session == 0);
	CHECK(kho_luo_writer_file(w, out, session, KHO_COMPAT_MEMFD_V2, desc, 7));
	EXPECT(kho_luo_writer_file(w, out, 5, KHO_COMPAT_MEMFD_V2, desc, 8) == -KHO_EINVAL);
	CHECK(kho_luo_writer_finish(w, out, &blob, &size));
	CHECK(kho_add_subtree(out, "LUO", blob, size));

	CHECK(kho_selftest_write(out, 1 * MIB, 42, &blob, &size));
	CHECK(kho_add_subtree(out, "kho_test", blob, size));

	uint64_t region;
	CHECK(arena_alloc(&ram, 9, &region));
	arena_fill(&ram, region, 2 * MIB, 5);
	struct kho_reserve_mem r = {"vmstate", region, 2 * MIB};
	CHECK(kho_memblock_write(out, &r, 1, &blob, &size));
	CHECK(kho_add_subtree(out, "memblock", blob, size));

	CHECK(kho_kexec_metadata_write(out, "7.2.13-c", 2, &blob));
	CHECK(kho_add_subtree(out, "kexec-metadata", blob, 73));
	EXPECT(kho_kexec_metadata_write(out, "a release string longer than sixty-four bytes, which the layout cannot hold",
					1, &blob) != 0);

	struct kho_data data;
	CHECK(kho_out_finish(out, &data));

	/* The next kernel: import, then read LUO and the memfd back. */
	struct kho_in *in = NULL;
	CHECK(kho_in_import(&platform, &data, &in, NULL));
	CHECK(kho_in_reserved(in, reserve_block, &ram));
	uint64_t luo_blob = 0, luo_size = 0;
	CHECK(kho_retrieve_subtree(in, "LUO", &luo_blob, &luo_size));
	struct kho_luo *luo = NULL;
	CHECK(kho_luo_inspect(in, luo_blob, luo_size, &luo));
	uint64_t idx;
	CHECK(kho_luo_find_session(luo, "vm0", &idx));
	struct kho_luo_file f;
	CHECK(kho_luo_get_file(luo, idx, 0, &f));
	EXPECT(strcmp(f.compatible, KHO_COMPAT_MEMFD_V2) == 0 && f.token == 7 && f.data == desc);
	struct kho_memfd *m = NULL;
	CHECK(kho_memfd_inspect(in, f.data, &m));
	struct kho_memfd_info info;
	CHECK(kho_memfd_get_info(m, &info));
	EXPECT(info.size == len && info.pos == 12345);
	uint8_t *back = calloc(len, 1);
	uint64_t got = 0;
	EXPECT(back != NULL);
	CHECK(kho_memfd_read(in, m, 0, back, len, &got));
	EXPECT(got == len && memcmp(back, bytes, len) == 0);
	kho_memfd_destroy(in, m);
	kho_luo_destroy(in, luo);
	kho_in_destroy(in);
	free(back);
	free(bytes);
	arena_fini(&ram);
	printf("writers read back: ok\n");
}

int main(void)
{
	loader_pieces();
	writers();
	printf("producer: all passed\n");
	return 0;
}
