/*
 * layout.c: the wire structs of kho.h have the kernel's layout. The header
 * asserts the same in its trailer; this test states it independently, and
 * checks the constants, at compile time and at run time.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "kho.h"

_Static_assert(sizeof(struct kho_data) == 32, "kho_data");
_Static_assert(offsetof(struct kho_data, fdt_addr) == 0, "fdt_addr");
_Static_assert(offsetof(struct kho_data, fdt_size) == 8, "fdt_size");
_Static_assert(offsetof(struct kho_data, scratch_addr) == 16, "scratch_addr");
_Static_assert(offsetof(struct kho_data, scratch_size) == 24, "scratch_size");
_Static_assert(_Alignof(struct kho_data) == 1, "kho_data is packed");
_Static_assert(sizeof(struct kho_scratch) == 16, "kho_scratch");
_Static_assert(offsetof(struct kho_scratch, size) == 8, "kho_scratch.size");
_Static_assert(sizeof(struct kho_vmalloc) == 16, "kho_vmalloc");
_Static_assert(_Alignof(struct kho_vmalloc) == 8, "kho_vmalloc is 8-aligned");
_Static_assert(offsetof(struct kho_vmalloc, total_pages) == 8, "total_pages");
_Static_assert(offsetof(struct kho_vmalloc, flags) == 12, "flags");
_Static_assert(offsetof(struct kho_vmalloc, order) == 14, "order");
_Static_assert(sizeof(struct kho_block_header) == 16, "kho_block_header");
_Static_assert(_Alignof(struct kho_block_header) == 1, "kho_block_header is packed");
_Static_assert(offsetof(struct kho_block_header, count) == 8, "count");
_Static_assert(sizeof(struct kho_array_desc) == 16, "kho_array_desc");
_Static_assert(offsetof(struct kho_array_desc, version) == 4, "version");
_Static_assert(offsetof(struct kho_array_desc, reserved) == 6, "reserved");
_Static_assert(offsetof(struct kho_array_desc, first) == 8, "first");
_Static_assert(KHO_PAGE_SIZE == 4096 && KHO_PAGE_SHIFT == 12, "4 KiB pages");
_Static_assert(KHO_EINVAL == 22 && KHO_ENOMEM == 12 && KHO_ENOENT == 2, "errno values");
_Static_assert(KHO_ARRAY_MAGIC == 0x4b415252, "'KARR'");

int main(void)
{
	int failed = 0;
	/* Packed: a kho_data may sit at any offset of a setup_data payload. */
	unsigned char buf[33];
	struct kho_data d = {0x1122334455667788ull, 4096, 0xa000, 32};
	memcpy(buf + 1, &d, sizeof(d));
	failed += buf[1] != 0x88 || buf[8] != 0x11 || buf[9] != 0x00 || buf[10] != 0x10;
	failed += strcmp(KHO_COMPAT_V4, "kho-v4") != 0;
	failed += strcmp(KHO_COMPAT_VMALLOC_V1, "vmalloc-v1") != 0;
	failed += strcmp(KHO_COMPAT_BLOCK_V1, "block-v1") != 0;
	failed += strcmp(KHO_COMPAT_ARRAY_V1, "array-v1") != 0;
	failed += strcmp(KHO_COMPAT_RADIX_V1, "radix-v1") != 0;
	printf("layout: %d passed, %d failed\n", 6 - failed, failed);
	return failed != 0;
}
