/* The sparse tasks' default store: an append-only file of records written
 * through group commit. A record (little-endian, packed):
 *
 *   0  u32 crc32c of bytes 4..len     20 u64 task id
 *   4  u32 len, header included       28 i64 deadline (CLOCK_REALTIME ns)
 *   8  u64 seq, rising in the file           or result (FINISH)
 *  16  u8 type, u8 outcome, u16 zero  36 payload (SUBMIT)
 *
 * A bad record with no good record after it is a torn tail (the write of an
 * unacknowledged batch stopped short): it is cut off. A bad record with a
 * good one after it is corruption, which open refuses, naming the offset. */
#include "sparse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR	   36
#define MAX_REC	   (HDR + (16u << 20))
#define COPY_CHUNK ((size_t)1 << 20)

/* --- CRC32C --- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
	}
	c = (uint32_t)c64;
	for (; len; p++, len--)
		c = __builtin_ia32_crc32qi(c, *p);
	return c;
}
#endif

static uint32_t (*crc_fn)(uint32_t, const uint8_t *, size_t);

static void crc_pick(void)
{
	crc_init();
	crc_fn = crc_sw;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		crc_fn = crc_hw;
#endif
}

uint32_t halo_crc32c(uint32_t crc, const void *buf, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, crc_pick);
	return ~crc_fn(~crc, buf, len);
}

/* --- records --- */

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Encode rec with seq into out (HDR + rec->len bytes). */
static size_t encode(uint8_t *out, const halo_sparse_rec *rec, uint64_t seq)
{
	size_t len = HDR + rec->len;

	put32(out + 4, (uint32_t)len);
	put64(out + 8, seq);
	out[16] = rec->type;
	out[17] = rec->outcome;
	out[18] = out[19] = 0;
	put64(out + 20, rec->id);
	put64(out + 28,
	      (uint64_t)(rec->type == HALO_SPARSE_REC_FINISH ? rec->result
							     : rec->deadline));
	if (rec->len)
		memcpy(out + HDR, rec->payload, rec->len);
	put32(out, halo_crc32c(0, out + 4, len - 4));
	return len;
}

/* Decode the record at p (avail bytes there) if it is whole, checksummed
 * and after seq `after`. Returns its length, or 0 and why in *why. */
static size_t decode(const uint8_t *p, size_t avail, uint64_t after,
		     halo_sparse_rec *rec, uint64_t *seq, const char **why)
{
	uint32_t len;

	if (avail < HDR) {
		*why = "short header";
		return 0;
	}
	len = get32(p + 4);
	if (len < HDR || len > MAX_REC || p[16] < HALO_SPARSE_REC_SUBMIT ||
	    p[16] > HALO_SPARSE_REC_FINISH) {
		*why = "bad length or type";
		return 0;
	}
	if (len > avail) {
		*why = "short record";
		return 0;
	}
	*seq = get64(p + 8);
	if (*seq <= after) {
		*why = "sequence number out of order";
		return 0;
	}
	if (get32(p) != halo_crc32c(0, p + 4, len - 4)) {
		*why = "checksum mismatch";
		return 0;
	}
	memset(rec, 0, sizeof(*rec));
	rec->type = p[16];
	rec->outcome = p[17];
	rec->id = get64(p + 20);
	if (rec->type == HALO_SPARSE_REC_FINISH)
		rec->result = (int64_t)get64(p + 28);
	else
		rec->deadline = (int64_t)get64(p + 28);
	rec->payload = len > HDR ? p + HDR : NULL;
	rec->len = len - HDR;
	return len;
}

/* Is there any good record after the bad one at off? */
static int good_after(const uint8_t *p, size_t size, size_t off, uint64_t after)
{
	halo_sparse_rec rec;
	uint64_t seq;
	const char *why;
	uint32_t len = size - off >= HDR ? get32(p + off + 4) : 0;

	if (len >= HDR && len <= size - off &&
	    decode(p + off + len, size - off - len, after, &rec, &seq, &why))
		return 1;
	for (size_t q = off + 1; q + HDR <= size; q++)
		if (decode(p + q, size - q, after, &rec, &seq, &why))
			return 1;
	return 0;
}

/* --- the store --- */

static void on_batch(halo_gc *gc, size_t records, int err, void *arg)
{
	halo_sparse_journal *j = arg;

	(void)gc;
	j->inflight -= records;
	halo_sparse_durable(j->s, records, err);
}

int halo__sparse_journal_setup(halo_sparse_journal *j, halo_loop *loop,
			       const char *path, char *err, size_t errlen)
{
	char *dir, *slash;

	memset(j, 0, sizeof(*j));
	j->fd = j->dirfd = -1;
	j->loop = loop;
	j->path = strdup(path);
	dir = strdup(path);
	if (!j->path || !dir) {
		free(dir);
		free(j->path);
		return -ENOMEM;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = 0;
	else
		*slash = 0;
	j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (j->fd >= 0)
		j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->fd < 0 || j->dirfd < 0) {
		int e = errno;

		snprintf(err, errlen, "sparse journal %s: cannot open %s: %s",
			 path, j->fd < 0 ? "the file" : "its directory",
			 strerror(e));
		if (j->fd >= 0)
			close(j->fd);
		free(dir);
		free(j->path);
		return -e;
	}
	free(dir);
	return 0;
}

static int j_attach(void *store, halo_sparse *s)
{
	halo_sparse_journal *j = store;

	j->s = s;
	return 0;
}

static int j_replay(void *store,
		    int (*fn)(void *ctx, const halo_sparse_rec *rec), void *ctx,
		    char *err, size_t errlen)
{
	halo_sparse_journal *j = store;
	halo_gc_opts go = {.on_batch = on_batch, .arg = j};
	struct stat st;
	const uint8_t *p = NULL;
	size_t size, off = 0;
	int r = 0;

	if (fstat(j->fd, &st) < 0)
		return -errno;
	size = (size_t)st.st_size;
	if (size) {
		p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, j->fd, 0);
		if (p == MAP_FAILED)
			return -errno;
		madvise((void *)p, size, MADV_SEQUENTIAL);
	}
	while (off < size) {
		halo_sparse_rec rec;
		uint64_t seq;
		const char *why;
		size_t len =
		    decode(p + off, size - off, j->seq, &rec, &seq, &why);

		if (!len) {
			if (good_after(p, size, off, j->seq)) {
				snprintf(
				    err, errlen,
				    "sparse journal %s: corrupt record at "
				    "offset %zu (%s) with intact records "
				    "after it; not a torn tail, so nothing "
				    "was cut: restore the file, or truncate "
				    "it at %zu to lose what follows",
				    j->path, off, why, off);
				r = -EBADMSG;
				goto out;
			}
			j->torn_bytes = size - off;
			break;
		}
		r = fn(ctx, &rec);
		if (r < 0)
			goto out;
		j->seq = seq;
		off += len;
	}
	if (j->torn_bytes &&
	    (ftruncate(j->fd, (off_t)off) < 0 || fsync(j->fd) < 0)) {
		r = -errno;
		snprintf(err, errlen,
			 "sparse journal %s: cannot cut the torn tail at "
			 "offset %zu: %s",
			 j->path, off, strerror(errno));
		goto out;
	}
	go.offset = (int64_t)off;
	r = halo_gc_init(&j->gc, j->loop, j->fd, &go);
	if (r == 0)
		j->has_gc = 1;
out:
	if (p)
		munmap((void *)p, size);
	return r;
}

static int j_room(halo_sparse_journal *j, size_t len)
{
	size_t cap = j->cap ? j->cap : 4096;
	char *b;

	if (len <= j->cap)
		return 0;
	while (cap < len)
		cap *= 2;
	b = realloc(j->buf, cap);
	if (!b)
		return -ENOMEM;
	j->buf = b;
	j->cap = cap;
	return 0;
}

static int j_append(void *store, const halo_sparse_rec *rec)
{
	halo_sparse_journal *j = store;
	size_t len;
	int r = j_room(j, HDR + rec->len);

	if (r < 0)
		return r;
	len = encode((uint8_t *)j->buf, rec, j->seq + 1);
	r = halo_gc_append_quiet(&j->gc, j->buf, len);
	if (r < 0)
		return r;
	j->seq++;
	j->inflight++;
	return 0;
}

/* Write the live tasks' SUBMITs (old seq, current deadline) to fd. */
static int copy_live(const uint8_t *p, size_t size, int fd,
		     halo_sparse_live_fn live, void *ctx, size_t *kept,
		     size_t *bytes)
{
	size_t cap = COPY_CHUNK, off = 0, n = 0;
	uint8_t *out = malloc(cap);
	uint64_t after = 0;
	int r = 0;

	if (!out)
		return -ENOMEM;
	*kept = *bytes = 0;
	while (off < size) {
		halo_sparse_rec rec;
		uint64_t seq;
		const char *why;
		int64_t deadline;
		size_t len =
		    decode(p + off, size - off, after, &rec, &seq, &why);

		if (!len) {
			r = -EBADMSG;
			break;
		}
		off += len;
		after = seq;
		if (rec.type != HALO_SPARSE_REC_SUBMIT ||
		    !live(ctx, rec.id, &deadline))
			continue;
		rec.deadline = deadline;
		if (n + len > cap) {
			if (n && write(fd, out, n) != (ssize_t)n) {
				r = errno ? -errno : -EIO;
				break;
			}
			*bytes += n;
			n = 0;
			if (len > cap) {
				uint8_t *big = realloc(out, len);

				if (!big) {
					r = -ENOMEM;
					break;
				}
				out = big;
				cap = len;
			}
		}
		n += encode(out + n, &rec, seq);
		(*kept)++;
	}
	if (!r && n) {
		if (write(fd, out, n) != (ssize_t)n)
			r = errno ? -errno : -EIO;
		else
			*bytes += n;
	}
	free(out);
	return r;
}

/* Runs between batches (from on_batch): the durable part of the file is
 * rewritten into a new one, fsynced, renamed over, the directory fsynced;
 * the records gathered meanwhile then go to the new file. Synchronous: its
 * cost is one pass over the file. */
static int j_compact(void *store, halo_sparse_live_fn live, void *ctx)
{
	halo_sparse_journal *j = store;
	size_t size = (size_t)halo_gc_durable(&j->gc), kept = 0, bytes = 0;
	size_t plen = strlen(j->path) + sizeof(".compact");
	char *tmp = malloc(plen);
	const uint8_t *p = NULL;
	int fd = -1, r;

	if (j->gc.inflight) {
		free(tmp);
		return -EBUSY;
	}
	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, plen, "%s.compact", j->path);
	if (size) {
		p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, j->fd, 0);
		if (p == MAP_FAILED) {
			p = NULL;
			r = -errno;
			goto fail;
		}
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	errno = 0;
	r = copy_live(p, size, fd, live, ctx, &kept, &bytes);
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0 || rename(tmp, j->path) < 0) {
		r = -errno;
		goto fail;
	}
	/* Renamed: from here the new file is the journal, whatever the
	 * directory's fsync says. */
	if (fsync(j->dirfd) < 0)
		j->dir_sync_errors++;
	halo_gc_reopen(&j->gc, fd, (int64_t)bytes);
	close(j->fd);
	j->fd = fd;
	if (p)
		munmap((void *)p, size);
	free(tmp);
	return (int)kept;
fail:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	if (p)
		munmap((void *)p, size);
	free(tmp);
	return r;
}

static size_t j_inflight(void *store)
{
	halo_sparse_journal *j = store;

	return j->inflight;
}

static void j_detach(void *store)
{
	halo_sparse_journal *j = store;

	if (j->has_gc)
		halo_gc_close(&j->gc);
	if (j->fd >= 0)
		close(j->fd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	free(j->path);
	free(j->buf);
	memset(j, 0, sizeof(*j));
	j->fd = j->dirfd = -1;
}

const halo_sparse_store_ops halo_sparse_journal_ops = {
    .attach = j_attach,
    .replay = j_replay,
    .append = j_append,
    .compact = j_compact,
    .inflight = j_inflight,
    .detach = j_detach,
};
