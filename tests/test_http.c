#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "io/http.h"

#define LIT(s) (s), (sizeof(s) - 1)

static const char get_req[] = "GET /index.html?q=1 HTTP/1.1\r\n"
			      "Host: example.com\r\n"
			      "User-Agent: test/1.0\r\n"
			      "Accept:  */*  \r\n"
			      "\r\n";

static void assert_slice(halo_http_slice s, const char *want)
{
	ck_assert_uint_eq(s.len, strlen(want));
	ck_assert(memcmp(s.ptr, want, s.len) == 0);
}

static int parse_str(const char *s, halo_http_req *req)
{
	return halo_http_parse(s, strlen(s), req);
}

START_TEST(test_valid_get_fills_every_field)
{
	halo_http_req req;
	int n = halo_http_parse(LIT(get_req), &req);

	ck_assert_int_eq(n, (int)strlen(get_req));
	assert_slice(req.method, "GET");
	ck_assert_int_eq(req.method_id, HALO_HTTP_GET);
	assert_slice(req.target, "/index.html?q=1");
	ck_assert_int_eq(req.minor_version, 1);
	assert_slice(req.host, "example.com");
	ck_assert_int_eq(req.header_n, 3);
	assert_slice(req.headers[0].name, "Host");
	assert_slice(req.headers[1].value, "test/1.0");
	assert_slice(req.headers[2].name, "Accept");
	assert_slice(req.headers[2].value, "*/*");
	ck_assert(!req.has_content_length);
	ck_assert_uint_eq(req.content_length, 0);
	ck_assert(req.keep_alive);
}
END_TEST

START_TEST(test_keep_alive_follows_version_and_connection)
{
	static const struct {
		const char *req;
		bool keep_alive;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n",
		  false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
		  "Connection: close\r\n\r\n",
		  false },
		{ "GET / HTTP/1.0\r\nHost: a\r\nConnection: foo\r\n\r\n", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		halo_http_req req;
		int n = parse_str(cases[i].req, &req);

		ck_assert_msg(n == (int)strlen(cases[i].req), "case %zu: %d", i,
			      n);
		ck_assert_msg(req.keep_alive == cases[i].keep_alive,
			      "case %zu", i);
	}
}
END_TEST

START_TEST(test_pipelined_requests_parse_one_after_another)
{
	static const char buf[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
				  "POST /b HTTP/1.1\r\nHost: h\r\n"
				  "Content-Length: 5\r\n\r\nhello"
				  "GET /c HTTP/1.1\r\nHost: h\r\n"
				  "Connection: close\r\n\r\n";
	static const char *const targets[] = { "/a", "/b", "/c" };
	size_t off = 0;

	for (int i = 0; i < 3; i++) {
		halo_http_req req;
		int n = halo_http_parse(buf + off, sizeof(buf) - 1 - off, &req);

		ck_assert_int_gt(n, 0);
		assert_slice(req.target, targets[i]);
		ck_assert(req.keep_alive == (i < 2));
		off += (size_t)n + req.content_length;
	}
	ck_assert_uint_eq(off, sizeof(buf) - 1);
}
END_TEST

START_TEST(test_split_at_every_byte_needs_more_until_complete)
{
	/* The next request's first bytes follow, as they do when pipelined. */
	static const char buf[] = "PUT /x HTTP/1.1\r\nHost: h\r\n"
				  "Content-Length: 3\r\nX-Empty:\r\n\r\nabcGET /";
	size_t head = sizeof(buf) - 1 - strlen("abcGET /");
	halo_http_req whole, part;

	ck_assert_int_eq(halo_http_parse(LIT(buf), &whole), (int)head);
	for (size_t k = 0; k < head; k++)
		ck_assert_msg(halo_http_parse(buf, k, &part) == 0, "k=%zu", k);
	for (size_t k = head; k < sizeof(buf); k++) {
		ck_assert_int_eq(halo_http_parse(buf, k, &part), (int)head);
		ck_assert(part.target.ptr == whole.target.ptr);
		ck_assert_int_eq(part.header_n, whole.header_n);
		ck_assert_uint_eq(part.content_length, 3);
		ck_assert_uint_eq(part.headers[2].value.len, 0);
	}
}
END_TEST

START_TEST(test_partial_head_returns_zero_without_consuming)
{
	static const char buf[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Slow: 1\r\n";
	halo_http_req req;

	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(halo_http_parse(LIT(buf), &req), 0);
	ck_assert_int_eq(halo_http_parse(buf, 0, &req), 0);
}
END_TEST

/* A request line then one long header that never ends. */
static size_t fill_long_head(char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "GET / HTTP/1.1\r\nX-Long: ");

	memset(buf + n, 'a', len - n);
	return len;
}

START_TEST(test_oversized_head_fails_even_byte_by_byte)
{
	static char buf[HALO_HTTP_MAX_HEAD + 1024];
	halo_http_req req;

	fill_long_head(buf, sizeof(buf));
	for (size_t k = 0; k < HALO_HTTP_MAX_HEAD; k++)
		ck_assert_int_eq(halo_http_parse(buf, k, &req), 0);
	for (size_t k = HALO_HTTP_MAX_HEAD; k <= sizeof(buf); k++)
		ck_assert_int_eq(halo_http_parse(buf, k, &req), -EMSGSIZE);
}
END_TEST

START_TEST(test_head_of_exactly_the_limit_is_accepted)
{
	static char buf[HALO_HTTP_MAX_HEAD + 1];
	halo_http_req req;

	/* Ends in "\r\nHost: h\r\n\r\n" at byte MAX, then one more. */
	fill_long_head(buf, sizeof(buf));
	memcpy(buf + HALO_HTTP_MAX_HEAD - 13, "\r\nHost: h\r\n\r\n", 13);
	ck_assert_int_eq(halo_http_parse(buf, HALO_HTTP_MAX_HEAD, &req),
			 HALO_HTTP_MAX_HEAD);
	assert_slice(req.host, "h");

	fill_long_head(buf, sizeof(buf));
	memcpy(buf + HALO_HTTP_MAX_HEAD - 12, "\r\nHost: h\r\n\r\n", 13);
	ck_assert_int_eq(halo_http_parse(buf, sizeof(buf), &req), -EMSGSIZE);
}
END_TEST

START_TEST(test_more_than_max_headers_is_too_large)
{
	char buf[2048];
	halo_http_req req;
	size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");

	for (int i = 0; i < HALO_HTTP_MAX_HEADERS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Host%s: %d\r\n",
				      i ? "x" : "", i);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
	ck_assert_int_eq(halo_http_parse(buf, n, &req), (int)n);
	ck_assert_int_eq(req.header_n, HALO_HTTP_MAX_HEADERS);

	n -= 2;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "One-More: x\r\n\r\n");
	ck_assert_int_eq(halo_http_parse(buf, n, &req), -EMSGSIZE);
}
END_TEST

static const struct {
	const char *name;
	const char *buf;
	size_t len;
} malformed[] = {
#define BAD(name, s) { name, s, sizeof(s) - 1 }
	BAD("bad method char", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("missing version", "GET /\r\nHost: h\r\n\r\n"),
	BAD("missing version after space", "GET / \r\nHost: h\r\n\r\n"),
	BAD("version 2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
	BAD("version 1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
	BAD("lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n"),
	BAD("version with suffix", "GET / HTTP/1.10\r\nHost: h\r\n\r\n"),
	BAD("relative target", "GET index.html HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("authority target", "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("star without OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("control in target", "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
	BAD("empty header name", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"),
	BAD("header without colon", "GET / HTTP/1.1\r\nHost: h\r\nX\r\n\r\n"),
	BAD("obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
	BAD("obs-fold tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"),
	BAD("content-length letters", "GET / HTTP/1.1\r\nHost: h\r\n"
				      "Content-Length: 1a\r\n\r\n"),
	BAD("content-length sign", "GET / HTTP/1.1\r\nHost: h\r\n"
				   "Content-Length: +1\r\n\r\n"),
	BAD("content-length empty", "GET / HTTP/1.1\r\nHost: h\r\n"
				    "Content-Length:\r\n\r\n"),
	BAD("content-length list", "GET / HTTP/1.1\r\nHost: h\r\n"
				   "Content-Length: 5, 5\r\n\r\n"),
	BAD("content-length overflow", "GET / HTTP/1.1\r\nHost: h\r\n"
				       "Content-Length: 99999999999999999999\r\n\r\n"),
	BAD("conflicting content-length", "GET / HTTP/1.1\r\nHost: h\r\n"
					  "Content-Length: 5\r\n"
					  "Content-Length: 6\r\n\r\n"),
	BAD("transfer-encoding", "POST / HTTP/1.1\r\nHost: h\r\n"
				 "Transfer-Encoding: chunked\r\n\r\n"),
	BAD("NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"),
	BAD("NUL in method", "GE\0T / HTTP/1.1\r\nHost: h\r\n\r\n"),
	BAD("bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"),
	BAD("bare CR after version", "GET / HTTP/1.1\rHost: h\r\n\r\n"),
	BAD("bare LF after version", "GET / HTTP/1.1\nHost: h\r\n\r\n"),
	BAD("bare LF after header", "GET / HTTP/1.1\r\nHost: h\n\r\n"),
	BAD("bare LF at end", "GET / HTTP/1.1\r\nHost: h\r\n\n"),
	BAD("DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"),
	BAD("missing host in 1.1", "GET / HTTP/1.1\r\nX: h\r\n\r\n"),
	BAD("two hosts", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
	BAD("leading bare LF", "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
#undef BAD
};

START_TEST(test_malformed_request_is_bad_message)
{
	halo_http_req req;
	int n = halo_http_parse(malformed[_i].buf, malformed[_i].len, &req);

	ck_assert_msg(n == -EBADMSG, "%s: %d", malformed[_i].name, n);
}
END_TEST

START_TEST(test_malformed_prefix_fails_before_head_is_complete)
{
	halo_http_req req;

	ck_assert_int_eq(halo_http_parse(LIT("G@T"), &req), -EBADMSG);
	ck_assert_int_eq(halo_http_parse(LIT("GET / HTTP/2"), &req), -EBADMSG);
	ck_assert_int_eq(halo_http_parse(LIT("GET / HTTP/1.1\r\nA B"), &req),
			 -EBADMSG);
	ck_assert_int_eq(halo_http_parse(LIT("GET / HTTP/1.1\r\nHost: h\r\n"
					     "Transfer-Encoding: x\r\n"),
					 &req),
			 -EBADMSG);
	/* A trailing CR may still become CRLF. */
	ck_assert_int_eq(halo_http_parse(LIT("GET / HTTP/1.1\r"), &req), 0);
}
END_TEST

START_TEST(test_accepted_variants)
{
	halo_http_req req;

	ck_assert_int_gt(parse_str("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
				   &req),
			 0);
	assert_slice(req.method, "GET");
	ck_assert_int_gt(parse_str("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
				   &req),
			 0);
	ck_assert_int_eq(req.method_id, HALO_HTTP_OPTIONS);
	ck_assert_int_gt(parse_str("GET http://h:80/p HTTP/1.1\r\nHost: h:80"
				   "\r\n\r\n",
				   &req),
			 0);
	assert_slice(req.target, "http://h:80/p");
	ck_assert_int_gt(parse_str("M-SEARCH / HTTP/1.1\r\nHost:\r\n\r\n",
				   &req),
			 0);
	ck_assert_int_eq(req.method_id, HALO_HTTP_OTHER);
	assert_slice(req.host, "");
	ck_assert_int_gt(parse_str("GET / HTTP/1.1\r\nHost: h\r\n"
				   "Content-Length: 007\r\n"
				   "content-length: 7\r\n"
				   "X-Bin: caf\xc3\xa9\r\n\r\n",
				   &req),
			 0);
	ck_assert_uint_eq(req.content_length, 7);
	ck_assert(req.has_content_length);
}
END_TEST

START_TEST(test_host_valid_takes_names_addresses_and_ports)
{
	static const char *const good[] = {
		"example.com", "example.com:8080", "EXAMPLE.com.", "h:", "h:0",
		"127.0.0.1", "127.0.0.1:80", "999.1.1", "xn--bcher-kva.example",
		"a%2Fb", "a-b_c~d!$&'()*+,;=", "[::1]", "[::1]:8080",
		"[2001:db8::7]", "[::ffff:192.0.2.1]:443", "[v1.x:y]",
		"[VF.a]:1",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(halo_http_host_valid(good[i], strlen(good[i])),
			      "%s", good[i]);
}
END_TEST

START_TEST(test_host_valid_refuses_what_rfc_3986_does_not_allow)
{
	static const char *const bad[] = {
		"", "a b", "\x80", "exa\xc3\xa9mple", ":80", "h:8o",
		"h:80:90", "h:-1", "h/p", "u@h", "h?", "h#", "%2", "%zz", "a%g0",
		"[::1", "::1", "[::1]x", "[::1]:x", "[]", "[zz]", "[1.2.3.4]",
		"[::1%25eth0]", "[::1]]", "[v1]", "[v.x]", "[vx.y]", "[v1.]",
		"[v1.a/b]", "h\t",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!halo_http_host_valid(bad[i], strlen(bad[i])),
			      "%s", bad[i]);
	/* A NUL is a byte like any other, not an end. */
	ck_assert(!halo_http_host_valid("h\0", 2));
	ck_assert(!halo_http_host_valid(NULL, 0));
	/* len bounds the value: what follows is not looked at. */
	ck_assert(halo_http_host_valid("h:80 junk", 4));
}
END_TEST

START_TEST(test_response_is_formatted_or_enospc)
{
	static const char want[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/plain\r\n"
				   "Content-Length: 14\r\n"
				   "Connection: keep-alive\r\n\r\n"
				   "hello, world!\n";
	char out[256];
	int n;

	n = halo_http_response(out, sizeof(out), 200, LIT("hello, world!\n"), 1);
	ck_assert_int_eq(n, (int)sizeof(want) - 1);
	ck_assert(memcmp(out, want, (size_t)n) == 0);

	n = halo_http_response(out, sizeof(want) - 1, 200,
			       LIT("hello, world!\n"), 1);
	ck_assert_int_eq(n, (int)sizeof(want) - 1);
	n = halo_http_response(out, sizeof(want) - 2, 200,
			       LIT("hello, world!\n"), 1);
	ck_assert_int_eq(n, -ENOSPC);

	n = halo_http_response(out, sizeof(out), 431, NULL, 0, 0);
	ck_assert_int_gt(n, 0);
	out[n] = '\0';
	ck_assert_str_eq(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
			      "Content-Type: text/plain\r\n"
			      "Content-Length: 0\r\n"
			      "Connection: close\r\n\r\n");

	n = halo_http_response(out, sizeof(out), 200, NULL, 14, 1);
	ck_assert_int_eq(n, (int)sizeof(want) - 1 - 14);

	ck_assert_int_eq(halo_http_response(out, sizeof(out), 99, NULL, 0, 1),
			 -EINVAL);
	ck_assert_int_eq(halo_http_response(out, sizeof(out), 204, "x", 1, 1),
			 -EINVAL);
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("parse");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_valid_get_fills_every_field);
	tcase_add_test(tc, test_keep_alive_follows_version_and_connection);
	tcase_add_test(tc, test_pipelined_requests_parse_one_after_another);
	tcase_add_test(tc, test_split_at_every_byte_needs_more_until_complete);
	tcase_add_test(tc, test_partial_head_returns_zero_without_consuming);
	tcase_add_test(tc, test_oversized_head_fails_even_byte_by_byte);
	tcase_add_test(tc, test_head_of_exactly_the_limit_is_accepted);
	tcase_add_test(tc, test_more_than_max_headers_is_too_large);
	tcase_add_loop_test(tc, test_malformed_request_is_bad_message, 0,
			    (int)(sizeof(malformed) / sizeof(malformed[0])));
	tcase_add_test(tc, test_malformed_prefix_fails_before_head_is_complete);
	tcase_add_test(tc, test_accepted_variants);
	suite_add_tcase(s, tc);

	tc = tcase_create("response");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_response_is_formatted_or_enospc);
	suite_add_tcase(s, tc);

	tc = tcase_create("host");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_host_valid_takes_names_addresses_and_ports);
	tcase_add_test(tc,
		       test_host_valid_refuses_what_rfc_3986_does_not_allow);
	suite_add_tcase(s, tc);
	return s;
}
