#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

enum {
	C_TOKEN = 1, /* tchar, RFC 9110 5.6.2 */
	C_VCHAR = 2, /* visible ASCII: request-target bytes */
	C_FIELD = 4, /* field-value bytes: VCHAR, SP, HTAB, obs-text */
};

#define TV (C_TOKEN | C_VCHAR | C_FIELD)
#define VF (C_VCHAR | C_FIELD)

static const unsigned char cclass[256] = {
	['\t'] = C_FIELD,
	[' '] = C_FIELD,
	['!'] = TV, ['"'] = VF, ['#'] = TV, ['$'] = TV, ['%'] = TV, ['&'] = TV,
	['\''] = TV, ['('] = VF, [')'] = VF, ['*'] = TV, ['+'] = TV, [','] = VF,
	['-'] = TV, ['.'] = TV, ['/'] = VF,
	['0' ... '9'] = TV,
	[':'] = VF, [';'] = VF, ['<'] = VF, ['='] = VF, ['>'] = VF, ['?'] = VF,
	['@'] = VF,
	['A' ... 'Z'] = TV,
	['['] = VF, ['\\'] = VF, [']'] = VF, ['^'] = TV, ['_'] = TV, ['`'] = TV,
	['a' ... 'z'] = TV,
	['{'] = VF, ['|'] = TV, ['}'] = VF, ['~'] = TV,
	[0x80 ... 0xff] = C_FIELD,
};

/* NEED_MORE: the bytes so far are a valid prefix of a head. */
#define NEED_MORE (-EAGAIN)

struct cursor {
	const char *buf;
	size_t pos;
	size_t end;
};

static int cls(const struct cursor *c, size_t i)
{
	return cclass[(unsigned char)c->buf[i]];
}

/* A CRLF at pos: 1 if there, 0 if not a CR, NEED_MORE or -EBADMSG. */
static int eat_crlf(struct cursor *c)
{
	if (c->pos >= c->end)
		return NEED_MORE;
	if (c->buf[c->pos] != '\r')
		return 0;
	if (c->pos + 1 >= c->end)
		return NEED_MORE;
	if (c->buf[c->pos + 1] != '\n')
		return -EBADMSG;
	c->pos += 2;
	return 1;
}

/* Bytes of class want up to the byte stop, which is consumed. */
static int eat_until(struct cursor *c, int want, char stop,
		     halo_http_slice *out)
{
	size_t start = c->pos;

	while (c->pos < c->end && (cls(c, c->pos) & want))
		c->pos++;
	if (c->pos >= c->end)
		return NEED_MORE;
	if (c->buf[c->pos] != stop || c->pos == start)
		return -EBADMSG;
	out->ptr = c->buf + start;
	out->len = c->pos - start;
	c->pos++;
	return 0;
}

static bool slice_is(halo_http_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static bool slice_is_nocase(halo_http_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

static halo_http_method method_id(halo_http_slice m)
{
	static const char *const names[] = {
		[HALO_HTTP_GET] = "GET",	 [HALO_HTTP_HEAD] = "HEAD",
		[HALO_HTTP_POST] = "POST",	 [HALO_HTTP_PUT] = "PUT",
		[HALO_HTTP_DELETE] = "DELETE",	 [HALO_HTTP_OPTIONS] = "OPTIONS",
		[HALO_HTTP_PATCH] = "PATCH",
	};

	for (size_t i = 1; i < sizeof(names) / sizeof(names[0]); i++)
		if (slice_is(m, names[i]))
			return (halo_http_method)i;
	return HALO_HTTP_OTHER;
}

/* origin-form, "*" for OPTIONS, or absolute-form with a "scheme://" prefix
 * (which also tells it from the unsupported authority-form "host:port"). */
static bool target_ok(const halo_http_req *req)
{
	const char *p = req->target.ptr;
	size_t n = req->target.len, i;

	if (p[0] == '/')
		return true;
	if (n == 1 && p[0] == '*')
		return req->method_id == HALO_HTTP_OPTIONS;
	if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
		return false;
	for (i = 1; i < n; i++) {
		char ch = p[i];

		if (ch == ':')
			break;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '-' ||
		      ch == '.'))
			return false;
	}
	return n - i > 3 && p[i + 1] == '/' && p[i + 2] == '/';
}

/* "HTTP/1.0" or "HTTP/1.1" then CRLF; a prefix of it is NEED_MORE. */
static int eat_version(struct cursor *c, halo_http_req *req)
{
	static const char lit[] = "HTTP/1.";
	size_t have = c->end - c->pos, i;
	char minor;
	int res;

	for (i = 0; i < sizeof(lit) - 1; i++) {
		if (i >= have)
			return NEED_MORE;
		if (c->buf[c->pos + i] != lit[i])
			return -EBADMSG;
	}
	if (i >= have)
		return NEED_MORE;
	minor = c->buf[c->pos + i];
	if (minor != '0' && minor != '1')
		return -EBADMSG;
	req->minor_version = minor - '0';
	c->pos += i + 1;
	res = eat_crlf(c);
	return res == 0 ? -EBADMSG : res < 0 ? res : 0;
}

static int parse_request_line(struct cursor *c, halo_http_req *req)
{
	int res;

	for (;;) {
		res = eat_crlf(c);
		if (res < 0)
			return res;
		if (res == 0)
			break;
	}
	res = eat_until(c, C_TOKEN, ' ', &req->method);
	if (res)
		return res;
	req->method_id = method_id(req->method);
	res = eat_until(c, C_VCHAR, ' ', &req->target);
	if (res)
		return res;
	if (!target_ok(req))
		return -EBADMSG;
	return eat_version(c, req);
}

/* One field line after its name and colon: OWS value OWS CRLF. */
static int eat_value(struct cursor *c, halo_http_slice *value)
{
	size_t start, last;

	while (c->pos < c->end &&
	       (c->buf[c->pos] == ' ' || c->buf[c->pos] == '\t'))
		c->pos++;
	start = last = c->pos;
	while (c->pos < c->end && (cls(c, c->pos) & C_FIELD)) {
		if (c->buf[c->pos] != ' ' && c->buf[c->pos] != '\t')
			last = c->pos + 1;
		c->pos++;
	}
	switch (eat_crlf(c)) {
	case 1:
		break;
	case NEED_MORE:
		return NEED_MORE;
	default:
		return -EBADMSG;
	}
	value->ptr = c->buf + start;
	value->len = last - start;
	return 0;
}

static int content_length(halo_http_slice v, halo_http_req *req)
{
	uint64_t n = 0;

	if (v.len == 0)
		return -EBADMSG;
	for (size_t i = 0; i < v.len; i++) {
		unsigned d = (unsigned char)v.ptr[i] - '0';

		if (d > 9 || n > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		n = n * 10 + d;
	}
	if (req->has_content_length && req->content_length != n)
		return -EBADMSG;
	req->content_length = n;
	req->has_content_length = true;
	return 0;
}

/* Connection is a comma list of tokens; only close and keep-alive matter. */
static void connection(halo_http_slice v, bool *has_close, bool *has_keep)
{
	size_t i = 0;

	while (i < v.len) {
		halo_http_slice t;

		while (i < v.len &&
		       (v.ptr[i] == ',' || v.ptr[i] == ' ' || v.ptr[i] == '\t'))
			i++;
		t.ptr = v.ptr + i;
		while (i < v.len && v.ptr[i] != ',' && v.ptr[i] != ' ' &&
		       v.ptr[i] != '\t')
			i++;
		t.len = (size_t)(v.ptr + i - t.ptr);
		if (slice_is_nocase(t, "close"))
			*has_close = true;
		else if (slice_is_nocase(t, "keep-alive"))
			*has_keep = true;
	}
}

static int parse_fields(struct cursor *c, halo_http_req *req)
{
	bool has_close = false, has_keep = false;
	int res;

	for (;;) {
		halo_http_header *h;

		res = eat_crlf(c);
		if (res < 0)
			return res;
		if (res == 1)
			break;
		if (req->header_n == HALO_HTTP_MAX_HEADERS)
			return -EMSGSIZE;
		h = &req->headers[req->header_n];
		/* A leading SP or HTAB is obs-fold, any other non-token a
		 * malformed name: eat_until rejects both. */
		res = eat_until(c, C_TOKEN, ':', &h->name);
		if (res)
			return res;
		res = eat_value(c, &h->value);
		if (res)
			return res;
		req->header_n++;

		if (slice_is_nocase(h->name, "content-length")) {
			if (content_length(h->value, req))
				return -EBADMSG;
		} else if (slice_is_nocase(h->name, "transfer-encoding")) {
			return -EBADMSG;
		} else if (slice_is_nocase(h->name, "host")) {
			if (req->host.ptr)
				return -EBADMSG;
			req->host = h->value;
		} else if (slice_is_nocase(h->name, "connection")) {
			connection(h->value, &has_close, &has_keep);
		}
	}
	if (req->minor_version == 1 && !req->host.ptr)
		return -EBADMSG;
	req->keep_alive = !has_close && (req->minor_version == 1 || has_keep);
	return 0;
}

int halo_http_parse(const char *buf, size_t len, halo_http_req *req)
{
	struct cursor c = {
		.buf = buf,
		.pos = 0,
		.end = len < HALO_HTTP_MAX_HEAD ? len : HALO_HTTP_MAX_HEAD,
	};
	int res;

	if (!buf || !req)
		return -EINVAL;
	req->header_n = 0;
	req->host.ptr = NULL;
	req->host.len = 0;
	req->content_length = 0;
	req->has_content_length = false;
	req->keep_alive = false;

	res = parse_request_line(&c, req);
	if (!res)
		res = parse_fields(&c, req);
	if (res == NEED_MORE)
		return c.end == HALO_HTTP_MAX_HEAD ? -EMSGSIZE : 0;
	return res ? res : (int)c.pos;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_hex(char ch)
{
	return is_digit(ch) || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
}

/* unreserved / sub-delims (RFC 3986 2.2, 2.3): a reg-name's bytes but for
 * pct-encoded ones. A table: every request's Host goes through it. */
static const bool reg_char[256] = {
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
	['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1,
	['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1,
	['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1,
};

static bool is_reg_char(char ch)
{
	return reg_char[(unsigned char)ch];
}

/* What is between the brackets of an IP-literal. */
static bool ip_literal_ok(const char *p, size_t n)
{
	char a[INET6_ADDRSTRLEN];
	struct in6_addr six;
	size_t i = 1;

	if (n && (p[0] | 0x20) == 'v') {
		/* IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims /
		 * ":" ) */
		while (i < n && is_hex(p[i]))
			i++;
		if (i == 1 || i + 1 >= n || p[i] != '.')
			return false;
		for (i++; i < n; i++)
			if (!is_reg_char(p[i]) && p[i] != ':')
				return false;
		return true;
	}
	/* inet_pton takes exactly RFC 3986's IPv6address (and no zone). */
	if (!n || n >= sizeof(a))
		return false;
	memcpy(a, p, n);
	a[n] = '\0';
	return inet_pton(AF_INET6, a, &six) == 1;
}

bool halo_http_host_valid(const char *host, size_t len)
{
	size_t i = 0;

	if (!host || !len)
		return false;
	if (host[0] == '[') {
		const char *end = memchr(host, ']', len);

		if (!end || !ip_literal_ok(host + 1, (size_t)(end - host) - 1))
			return false;
		i = (size_t)(end - host) + 1;
	} else {
		/* A reg-name (an IPv4 address is one too), up to the byte
		 * that is none of it, which must be the port's ':'. */
		for (;;) {
			while (i < len && is_reg_char(host[i]))
				i++;
			if (len - i < 3 || host[i] != '%' ||
			    !is_hex(host[i + 1]) || !is_hex(host[i + 2]))
				break;
			i += 3;
		}
		if (i == 0)
			return false;
	}
	if (i < len && host[i++] != ':')
		return false;
	for (; i < len; i++)
		if (!is_digit(host[i]))
			return false;
	return true;
}

const char *halo_http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "";
	}
}

int halo_http_response(char *out, size_t cap, int status, const char *body,
		       size_t body_len, int keep_alive)
{
	const char *conn = keep_alive ? "keep-alive" : "close";
	char head[192];
	int n;

	if (!out || status < 200 || status > 599)
		return -EINVAL;
	if ((status == 204 || status == 304) && body_len)
		return -EINVAL;
	if (status == 204)
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 204 %s\r\nConnection: %s\r\n\r\n",
			     halo_http_reason(status), conn);
	else
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d %s\r\n"
			     "Content-Type: text/plain\r\n"
			     "Content-Length: %zu\r\n"
			     "Connection: %s\r\n\r\n",
			     status, halo_http_reason(status), body_len, conn);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -EINVAL;
	if (!body)
		body_len = 0;
	if ((size_t)n > cap || cap - (size_t)n < body_len ||
	    body_len > (size_t)INT32_MAX - (size_t)n)
		return -ENOSPC;
	memcpy(out, head, (size_t)n);
	if (body_len)
		memcpy(out + n, body, body_len);
	return n + (int)body_len;
}
