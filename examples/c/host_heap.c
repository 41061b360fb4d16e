/*
 * host_heap.c: the two functions the freestanding kho archive needs from
 * its embedder, here over the C library's allocator. A kernel would use
 * its own (kmalloc-style) allocator; firmware a static pool.
 */
#include <stdlib.h>

#include "kho.h"

void *kho_host_alloc(size_t size, size_t align)
{
	if (align < sizeof(void *))
		align = sizeof(void *);
	/* aligned_alloc wants a size that is a multiple of the alignment. */
	size_t rounded = (size + align - 1) & ~(align - 1);
	return aligned_alloc(align, rounded ? rounded : align);
}

void kho_host_free(void *ptr, size_t size, size_t align)
{
	(void)size;
	(void)align;
	free(ptr);
}
