/* Fault injection (make FAULT=1): the Nth allocation of a kind fails once,
 * or from then on, and nothing else changes. Without FAULT=1 the suite is
 * empty and says so. */
#include <errno.h>
#include <stdio.h>

#include "runtime/fault.h"
#include "tests/util.h"

#ifdef HALO_FAULT

TU_LOOP_FIXTURE(loop)

START_TEST(test_nth_slot_fails_once_then_futures_come_again)
{
	halo_fut *a, *b, *c;

	halo__fault_arm(HALO_FAULT_SLOT, 2, false);
	a = halo_fut_new(&loop);
	b = halo_fut_new(&loop);
	c = halo_fut_new(&loop);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_null(b);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(halo__fault_failed(), 1);
	halo_fut_release(a);
	halo_fut_release(c);
}
END_TEST

static void nothing(void *arg)
{
	(void)arg;
}

START_TEST(test_persistent_heap_fault_fails_every_later_allocation)
{
	void *p;

	halo__fault_arm(HALO_FAULT_HEAP, 1, true);
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_null(halo_mem_alloc(&loop, 64));
	ck_assert_ptr_null(halo_mem_strdup(&loop, "x"));
	ck_assert_int_eq(halo_loop_post(&loop, nothing, NULL), -ENOMEM);
	halo__fault_disarm();
	p = halo_mem_zalloc(&loop, 64);
	ck_assert_ptr_nonnull(p);
	halo_mem_free(&loop, p, 64);
	ck_assert_uint_eq(halo__fault_failed(), 12);
}
END_TEST

START_TEST(test_kinds_count_apart_and_any_counts_them_all)
{
	uint64_t heap, slot, any;
	halo_fut *f = halo_fut_new(&loop); /* its pool's first slab: a refill */
	void *p;

	halo_fut_release(f);
	heap = halo__fault_count(HALO_FAULT_HEAP);
	slot = halo__fault_count(HALO_FAULT_SLOT);
	any = halo__fault_count(HALO_FAULT_ANY);
	f = halo_fut_new(&loop);
	p = halo_mem_alloc(&loop, 3000); /* above the pools: heap only */

	ck_assert_uint_eq(halo__fault_count(HALO_FAULT_HEAP), heap + 1);
	ck_assert_uint_eq(halo__fault_count(HALO_FAULT_SLOT), slot + 1);
	ck_assert_uint_eq(halo__fault_count(HALO_FAULT_ANY), any + 2);
	halo__fault_arm(HALO_FAULT_ANY, 2, false);
	halo_fut_release(f);
	f = halo_fut_new(&loop);
	ck_assert_ptr_nonnull(f);		       /* 1st of any */
	ck_assert_ptr_null(halo_mem_alloc(&loop, 16)); /* 2nd of any */
	halo_mem_free(&loop, p, 3000);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_failed_refill_fails_the_allocation_that_needed_it)
{
	enum { SIZE = 1536 }; /* a class nothing else here uses */
	void *first, *p;

	halo__fault_arm(HALO_FAULT_REFILL, 1, false);
	ck_assert_ptr_null(halo_mem_alloc(&loop, SIZE));
	first = halo_mem_alloc(&loop, SIZE);
	ck_assert_ptr_nonnull(first);
	halo__fault_arm(HALO_FAULT_REFILL, 1, true);
	/* The slab has room: no refill, no failure. */
	p = halo_mem_alloc(&loop, SIZE);
	ck_assert_ptr_nonnull(p);
	halo_mem_free(&loop, p, SIZE);
	halo_mem_free(&loop, first, SIZE);
	halo__fault_disarm();
}
END_TEST

static int64_t body(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	return 7;
}

START_TEST(test_failed_stack_mmap_fails_the_fiber_with_enomem)
{
	halo_fut *f;

	halo__fault_arm(HALO_FAULT_STACK, 1, false);
	f = halo_spawn(&loop, body, NULL);
	ck_assert_ptr_nonnull(f); /* the stack is mapped when it first runs */
	ck_assert_int_eq(halo_fut_wait(f), -ENOMEM);
	halo_fut_release(f);
	f = halo_spawn(&loop, body, NULL);
	ck_assert_int_eq(halo_fut_wait(f), 7);
	halo_fut_release(f);
}
END_TEST

Suite *fault_suite(void)
{
	Suite *s = suite_create("fault");
	TCase *tc = tcase_create("fault");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_nth_slot_fails_once_then_futures_come_again);
	tcase_add_test(tc,
		       test_persistent_heap_fault_fails_every_later_allocation);
	tcase_add_test(tc, test_kinds_count_apart_and_any_counts_them_all);
	tcase_add_test(tc,
		       test_failed_refill_fails_the_allocation_that_needed_it);
	tcase_add_test(tc, test_failed_stack_mmap_fails_the_fiber_with_enomem);
	suite_add_tcase(s, tc);
	return s;
}

#else

Suite *fault_suite(void)
{
	printf("note: fault injection is not built in; the fault tests run "
	       "with make check FAULT=1\n");
	return suite_create("fault");
}

#endif
