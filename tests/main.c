/* The test runner: every tests/test_<module>.c contributes one Check suite,
 * listed in the generated suites.h. HALO_SUITE=<module> runs one. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define X(name) Suite *name##_suite(void);
#include "suites.h"
#undef X

int main(void)
{
	const char *only = getenv("HALO_SUITE");
	SRunner *sr = NULL;
	int failed;

#define X(name)                                                                \
	if (!only || strcmp(only, #name) == 0) {                               \
		if (!sr)                                                       \
			sr = srunner_create(name##_suite());                   \
		else                                                           \
			srunner_add_suite(sr, name##_suite());                 \
	}
#include "suites.h"
#undef X
	if (!sr) {
		fprintf(stderr, "no suite named %s\n", only);
		return 2;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
