/* A strict, allocation-free HTTP/1.1 request-head parser and a response
 * formatter for small servers. The parser keeps no state between calls: call
 * it again on the whole buffer each time more bytes arrive; every call
 * rescans at most HALO_HTTP_MAX_HEAD bytes.
 *
 * What is accepted (RFC 9112), anything else is -EBADMSG:
 * - empty lines (CRLF) before the request line are skipped, as RFC 9112 2.2
 *   asks; they count towards the head's size;
 * - request line: a token method, one SP, a target of visible ASCII that is
 *   origin-form ("/..."), absolute-form ("scheme://...") or "*" (OPTIONS
 *   only), one SP, exactly "HTTP/1.0" or "HTTP/1.1"; authority-form (CONNECT)
 *   is not supported;
 * - every line ends in CRLF: a bare LF or a bare CR anywhere is malformed;
 * - header names are tokens followed directly by ':' (no whitespace before
 *   it), values are visible ASCII, SP, HTAB or bytes >= 0x80; obs-fold (a line
 *   starting with SP or HTAB) is rejected;
 * - Content-Length is digits only; repeated Content-Length fields must agree;
 * - Transfer-Encoding is rejected: this parser serves servers that skip a
 *   body by its length and cannot skip a chunked one, and refusing it closes
 *   the door to request smuggling;
 * - an HTTP/1.1 request carries exactly one Host field, an HTTP/1.0 request
 *   at most one. */
#ifndef HALO_IO_HTTP_H
#define HALO_IO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest request head (request line, headers, final CRLF) accepted. */
#define HALO_HTTP_MAX_HEAD 8192
#define HALO_HTTP_MAX_HEADERS 32

/* Bytes of the caller's buffer: not NUL-terminated. */
typedef struct halo_http_slice {
	const char *ptr;
	size_t len;
} halo_http_slice;

typedef struct halo_http_header {
	halo_http_slice name;
	halo_http_slice value; /* without leading and trailing SP/HTAB */
} halo_http_header;

typedef enum halo_http_method {
	HALO_HTTP_OTHER = 0,
	HALO_HTTP_GET,
	HALO_HTTP_HEAD,
	HALO_HTTP_POST,
	HALO_HTTP_PUT,
	HALO_HTTP_DELETE,
	HALO_HTTP_OPTIONS,
	HALO_HTTP_PATCH,
} halo_http_method;

typedef struct halo_http_req {
	halo_http_slice method;
	halo_http_method method_id; /* methods are case-sensitive: "get" is OTHER */
	halo_http_slice target;
	int minor_version; /* 0 or 1 */
	halo_http_slice host; /* ptr NULL if the request has no Host field */
	uint64_t content_length; /* 0 without a Content-Length field */
	bool has_content_length;
	bool keep_alive;
	int header_n;
	halo_http_header headers[HALO_HTTP_MAX_HEADERS];
} halo_http_req;

/* Parse the request head at the start of buf. Returns the head's length (> 0)
 * and fills req, whose slices point into buf; 0 if more bytes are needed;
 * -EMSGSIZE if the head exceeds HALO_HTTP_MAX_HEAD or has more than
 * HALO_HTTP_MAX_HEADERS fields (answer 431); -EBADMSG if it is malformed
 * (answer 400 and close). Errors are reported as soon as the bytes seen prove
 * them. The body, content_length bytes, follows the head; a pipelined request
 * follows the body. req is unspecified unless the result is > 0. */
HALO_API int halo_http_parse(const char *buf, size_t len, halo_http_req *req);

/* Whether the len bytes at host are a Host field value that a server of
 * http(s) URIs accepts: uri-host [":" port] (RFC 9110 7.2), where uri-host
 * is a reg-name, an IPv4 address or a bracketed IPv6 or IPvFuture literal
 * (RFC 3986 3.2.2) and port is digits. An empty uri-host is refused: an
 * http URI may not have one (RFC 9110 4.2.1). halo_http_parse() does not
 * apply it; a server answers 400 to a request whose Host fails it
 * (RFC 9112 3.2). */
HALO_API bool halo_http_host_valid(const char *host, size_t len);

/* The reason phrase of status ("Not Found"), or "" for an unknown one. */
HALO_API const char *halo_http_reason(int status);

/* Format an HTTP/1.1 response with a text/plain body into out: status line,
 * Content-Length, Connection: keep-alive or close, then body_len bytes of
 * body. With body NULL only the head is written, still announcing body_len
 * (a HEAD response). No Date field is sent. Returns the length written (no
 * NUL is added), -ENOSPC if it does not fit in cap, -EINVAL for a status
 * outside 200..599 or a body on a 204 or 304. */
HALO_API int halo_http_response(char *out, size_t cap, int status,
				const char *body, size_t body_len,
				int keep_alive);

#ifdef __cplusplus
}
#endif
#endif
