/* Group commit with two batch buffers: one gathers appends, the other is
 * being written and synced. A batch is writev (continued after short writes)
 * then fdatasync, sequenced: io/ does not link SQEs, and an unlinked
 * fdatasync submitted beside the writev could run before the data is in the
 * page cache. The prepare hook starts a batch whenever none is in flight, so
 * a batch's first SQE leaves in the tick its records were appended. */
#include "groupcommit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../io/file.h"

static void op_done(halo_fut *f, void *arg);

static int reserve(struct halo__gc_batch *b, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (!p)
			return -ENOMEM;
		b->buf = p;
		b->cap = cap;
	}
	if (b->n == b->fcap) {
		size_t fcap = b->fcap ? b->fcap * 2 : 64;
		struct halo__gc_rec *p = realloc(b->recs, fcap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		b->recs = p;
		b->fcap = fcap;
	}
	return 0;
}

/* Complete every future of the in-flight batch and make room for the next
 * one. Offsets: a failed batch does not advance, the next batch rewrites
 * the same range. */
static void end_batch(halo_gc *gc, int err)
{
	struct halo__gc_batch *b = &gc->b[!gc->cur];
	int64_t off = gc->off;
	size_t pos = 0, n;

	for (size_t i = 0; i < b->n; i++) {
		halo_fut *f = b->recs[i].fut;

		pos += b->recs[i].len;
		if (!f)
			continue;
		if (err)
			halo_fut_fail(f, err, "group commit batch failed");
		else
			halo_fut_resolve(f, off + (int64_t)(pos -
							    b->recs[i].len),
					  NULL);
		halo_fut_release(f);
	}
	if (err) {
		/* A short write before the error (RLIMIT_FSIZE, ENOSPC) left
		 * part of the batch in the file: cut it off, so that a reader
		 * never finds a half-written record behind the durable end.
		 * Shrinking is allowed past the file size limit. */
		if (gc->done && ftruncate(gc->fd, off) < 0)
			gc->stats.failed_truncates++;
		gc->stats.failed_batches++;
	} else {
		gc->off += (int64_t)b->len;
		gc->stats.bytes += b->len;
	}
	n = b->n;
	b->n = 0;
	b->len = 0;
	gc->inflight = 0;
	if (gc->opts.on_batch)
		gc->opts.on_batch(gc, n, err, gc->opts.arg);
}

static int start_op(halo_gc *gc, halo_fut *op)
{
	if (!op)
		return -ENOMEM;
	gc->op = op;
	gc->op_w.fn = op_done;
	gc->op_w.arg = gc;
	halo_fut_add_waiter(op, &gc->op_w);
	return 0;
}

static int write_rest(halo_gc *gc)
{
	struct halo__gc_batch *b = &gc->b[!gc->cur];
	struct iovec iov = {b->buf + gc->done, b->len - gc->done};

	gc->stats.writes++;
	return start_op(gc, halo_writev(gc->loop, gc->fd, &iov, 1,
					gc->off + (int64_t)gc->done));
}

static void op_done(halo_fut *f, void *arg)
{
	halo_gc *gc = arg;
	struct halo__gc_batch *b = &gc->b[!gc->cur];
	int64_t r = halo_fut_result(f);
	int is_sync = gc->done == b->len;

	halo_fut_release(f);
	gc->op = NULL;
	if (r < 0) {
		end_batch(gc, (int)r);
		return;
	}
	if (is_sync) {
		end_batch(gc, 0);
		return;
	}
	if (r == 0) {
		end_batch(gc, -EIO);
		return;
	}
	gc->done += (size_t)r;
	if (gc->done < b->len)
		r = write_rest(gc);
	else {
		gc->stats.fdatasyncs++;
		r = start_op(gc, halo_fdatasync(gc->loop, gc->fd));
	}
	if (r < 0)
		end_batch(gc, (int)r);
}

static int flush_hook(halo_loop *loop, void *arg)
{
	halo_gc *gc = arg;
	struct halo__gc_batch *b = &gc->b[gc->cur];

	(void)loop;
	if (gc->inflight || !b->n)
		return 0;
	gc->cur = !gc->cur;
	gc->inflight = 1;
	gc->done = 0;
	gc->stats.batches++;
	if (b->n > gc->stats.max_records)
		gc->stats.max_records = b->n;
	if (write_rest(gc) < 0)
		end_batch(gc, -ENOMEM);
	return 0;
}

int halo_gc_init(halo_gc *gc, halo_loop *loop, int fd,
		 const halo_gc_opts *opts)
{
	memset(gc, 0, sizeof(*gc));
	if (fd < 0 || (opts && opts->offset < 0))
		return -EINVAL;
	if (opts)
		gc->opts = *opts;
	gc->loop = loop;
	gc->fd = fd;
	gc->off = gc->opts.offset;
	if (!gc->off) {
		struct stat st;

		if (fstat(fd, &st) < 0)
			return -errno;
		gc->off = st.st_size;
	}
	halo_loop_prepare_add(loop, &gc->hook, flush_hook, gc);
	return 0;
}

int halo_gc_close(halo_gc *gc)
{
	struct halo__gc_batch *b = &gc->b[gc->cur];

	if (!gc->loop)
		return 0;
	if (gc->inflight)
		return -EBUSY;
	halo_loop_prepare_remove(gc->loop, &gc->hook);
	for (size_t i = 0; i < b->n; i++) {
		if (!b->recs[i].fut)
			continue;
		halo_fut_fail(b->recs[i].fut, -ECANCELED,
			      "group commit closed");
		halo_fut_release(b->recs[i].fut);
	}
	for (int i = 0; i < 2; i++) {
		free(gc->b[i].buf);
		free(gc->b[i].recs);
	}
	memset(gc, 0, sizeof(*gc));
	return 0;
}

halo_fut *halo_gc_append_at(halo_gc *gc, const void *rec, size_t len,
			    const char *file, int line)
{
	struct halo__gc_batch *b = &gc->b[gc->cur];
	halo_fut *f;

	if (!len || reserve(b, len) < 0)
		return NULL;
	f = halo_fut_new_at(gc->loop, file, line);
	if (!f)
		return NULL;
	memcpy(b->buf + b->len, rec, len);
	b->len += len;
	b->recs[b->n].fut = f;
	b->recs[b->n++].len = len;
	gc->stats.appends++;
	return halo_fut_ref(f);
}

int halo_gc_append_quiet(halo_gc *gc, const void *rec, size_t len)
{
	struct halo__gc_batch *b = &gc->b[gc->cur];

	if (!len)
		return -EINVAL;
	if (reserve(b, len) < 0)
		return -ENOMEM;
	memcpy(b->buf + b->len, rec, len);
	b->len += len;
	b->recs[b->n].fut = NULL;
	b->recs[b->n++].len = len;
	gc->stats.appends++;
	return 0;
}

int64_t halo_gc_durable(const halo_gc *gc)
{
	return gc->off;
}

int halo_gc_reopen(halo_gc *gc, int fd, int64_t offset)
{
	if (fd < 0 || offset < 0)
		return -EINVAL;
	if (gc->inflight)
		return -EBUSY;
	gc->fd = fd;
	gc->off = offset;
	return 0;
}

void halo_gc_stats_get(const halo_gc *gc, halo_gc_stats *out)
{
	*out = gc->stats;
}
