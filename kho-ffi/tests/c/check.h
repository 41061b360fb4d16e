/*
 * check.h: the assertions of kho's C tests. CHECK(call) requires a kho call
 * to return 0; EXPECT(cond) requires a condition. Either prints the file,
 * line and expression and exits 1.
 */
#ifndef KHO_TEST_CHECK_H
#define KHO_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

#endif
