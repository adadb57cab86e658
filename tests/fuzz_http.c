/* libFuzzer target for io/http.c: built and run by tests/fuzz.sh. Besides
 * "no crash", it checks that the parser is incremental: any prefix of the
 * input yields 0 or exactly the answer the whole input yields. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/http.h"

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__,    \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static void check_slice(halo_http_slice s, const char *buf, int n)
{
	CHECK(s.ptr >= buf);
	CHECK(s.ptr + s.len <= buf + n);
	for (size_t i = 0; i < s.len; i++)
		CHECK(s.ptr[i] != '\r' && s.ptr[i] != '\n' && s.ptr[i] != '\0');
}

static void check_result(int res, const char *buf, size_t len,
			 const halo_http_req *req)
{
	CHECK(res == 0 || res == -EMSGSIZE || res == -EBADMSG || res > 0);
	if (res == 0)
		CHECK(len < HALO_HTTP_MAX_HEAD);
	if (res <= 0)
		return;
	CHECK((size_t)res <= len && res <= HALO_HTTP_MAX_HEAD);
	CHECK(res >= 4 && memcmp(buf + res - 4, "\r\n\r\n", 4) == 0);
	CHECK(req->minor_version == 0 || req->minor_version == 1);
	CHECK(req->header_n >= 0 && req->header_n <= HALO_HTTP_MAX_HEADERS);
	CHECK(req->method.len > 0 && req->target.len > 0);
	check_slice(req->method, buf, res);
	check_slice(req->target, buf, res);
	if (req->host.ptr)
		check_slice(req->host, buf, res);
	else
		CHECK(req->minor_version == 0);
	for (int i = 0; i < req->header_n; i++) {
		check_slice(req->headers[i].name, buf, res);
		check_slice(req->headers[i].value, buf, res);
		CHECK(req->headers[i].name.len > 0);
		CHECK(memchr(req->headers[i].name.ptr, ':',
			     req->headers[i].name.len) == NULL);
	}
	if (!req->has_content_length)
		CHECK(req->content_length == 0);
}

static void check_same(const halo_http_req *a, const char *abuf,
		       const halo_http_req *b, const char *bbuf)
{
	CHECK(a->method.ptr - abuf == b->method.ptr - bbuf);
	CHECK(a->method.len == b->method.len && a->method_id == b->method_id);
	CHECK(a->target.ptr - abuf == b->target.ptr - bbuf);
	CHECK(a->target.len == b->target.len);
	CHECK(a->minor_version == b->minor_version);
	CHECK(a->content_length == b->content_length);
	CHECK(a->has_content_length == b->has_content_length);
	CHECK(a->keep_alive == b->keep_alive);
	CHECK(a->header_n == b->header_n);
	for (int i = 0; i < a->header_n; i++) {
		CHECK(a->headers[i].value.ptr - abuf ==
		      b->headers[i].value.ptr - bbuf);
		CHECK(a->headers[i].value.len == b->headers[i].value.len);
	}
}

/* The first chunk lives in its own allocation of exactly k bytes, so that
 * ASan catches a read past what the caller has handed over. */
static void check_split(const char *buf, size_t k, int whole_res,
			const halo_http_req *whole)
{
	char *part = malloc(k ? k : 1);
	halo_http_req req;
	int res;

	CHECK(part);
	memcpy(part, buf, k);
	res = halo_http_parse(part, k, &req);
	check_result(res, part, k, &req);
	if (res == 0) {
		CHECK(whole_res <= 0 || (size_t)whole_res > k);
	} else {
		CHECK(res == whole_res);
		if (res > 0)
			check_same(whole, buf, &req, part);
	}
	free(part);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	halo_http_req req;
	size_t off = 0;
	char out[512];
	int res;

	res = halo_http_parse(buf, size, &req);
	check_result(res, buf, size, &req);
	if (size) {
		check_split(buf, size / 2, res, &req);
		check_split(buf, (size_t)data[0] * 37 % (size + 1), res,
			    &req);
	}

	/* Pipelining: follow the chain of heads and bodies a server would. */
	for (int i = 0; i < 16 && res > 0; i++) {
		if (req.content_length > size - off - (size_t)res)
			break;
		off += (size_t)res + req.content_length;
		res = halo_http_parse(buf + off, size - off, &req);
		check_result(res, buf + off, size - off, &req);
	}

	if (size >= 2) {
		int status = 200 + data[0] % 400;
		size_t cap = data[1] * 2u;

		res = halo_http_response(out, cap, status, buf + 2, size - 2,
					 data[0] & 1);
		CHECK(res == -ENOSPC || res == -EINVAL ||
		      (res > 0 && (size_t)res <= cap));
	}
	return 0;
}
