/* Sockets: single-shot operations as futures, and multishot accept/recv
 * whose op is the handle itself (state in op->meta). halo owns the multishot
 * lifecycle: it re-arms when the kernel ends one, parks a recv that ran out
 * of buffers on its ring until a buffer comes back, or that holds too many of
 * them until its own come back, and returns the buffers and closes the fds
 * that arrive after a stop. */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "net.h"

int halo_net_listen(const char *host, uint16_t port,
		    const halo_listen_opts *opts)
{
	halo_listen_opts o = opts ? *opts : (halo_listen_opts){ 0 };
	struct sockaddr_storage ss;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int fd, one = 1, type = SOCK_STREAM | SOCK_CLOEXEC;

	memset(&ss, 0, sizeof(ss));
	if (host && strchr(host, ':')) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			return -EINVAL;
		len = sizeof(*in6);
	} else {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		in4->sin_addr.s_addr = htonl(INADDR_ANY);
		if (host && inet_pton(AF_INET, host, &in4->sin_addr) != 1)
			return -EINVAL;
		len = sizeof(*in4);
	}
	if (o.nonblock)
		type |= SOCK_NONBLOCK;
	fd = socket(ss.ss_family, type, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (o.reuseport &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    listen(fd, o.backlog > 0 ? o.backlog : SOMAXCONN) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int halo_net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

halo_fut *halo_socket_at(halo_loop *loop, int domain, int type, int protocol,
			 const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_socket(sqe, domain, type, protocol, 0);
	return &op->fut;
}

/* A cancelled accept the kernel completed anyway must not leak its fd. */
static void accept_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	if (flags & IORING_CQE_F_MORE)
		return;
	if (res >= 0 && !(op->fut.flags & FUT_NOPPED) &&
	    (op->fut.flags & FUT_CANCEL_REQ) && halo__fut_pending(&op->fut)) {
		close(res);
		halo__fut_complete(&op->fut, HALO_FUT_CANCELLED, -ECANCELED);
		return;
	}
	io_finish(op, res);
}

halo_fut *halo_accept_at(halo_loop *loop, int fd, int flags, const char *file,
			 int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_accept(sqe, fd, NULL, NULL, flags);
	op->on_cqe = accept_cqe;
	return &op->fut;
}

static void connect_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	if (flags & IORING_CQE_F_MORE)
		return;
	if (res >= 0 && !(op->fut.flags & FUT_NOPPED) &&
	    (op->fut.flags & FUT_CANCEL_REQ) && halo__fut_pending(&op->fut)) {
		halo__fut_complete(&op->fut, HALO_FUT_CANCELLED, -ECANCELED);
		return;
	}
	io_finish(op, res);
}

halo_fut *halo_connect_at(halo_loop *loop, int fd, const struct sockaddr *addr,
			  socklen_t addrlen, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	if (addrlen > sizeof(op->meta.addr))
		addrlen = sizeof(op->meta.addr);
	op = io_op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	memcpy(&op->meta.addr, addr, addrlen);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&op->meta.addr,
			      addrlen);
	op->on_cqe = connect_cqe;
	return &op->fut;
}

halo_fut *halo_recv_at(halo_loop *loop, int fd, void *buf, size_t len,
		       int flags, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	if (len > UINT32_MAX)
		len = UINT32_MAX;
	op = io_op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	io_uring_prep_recv(sqe, fd, buf, len, flags);
	return &op->fut;
}

halo_fut *halo_send_at(halo_loop *loop, int fd, const void *buf, size_t len,
		       int flags, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	if (len > UINT32_MAX)
		len = UINT32_MAX;
	op = io_op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	io_uring_prep_send(sqe, fd, buf, len, flags);
	return &op->fut;
}

/* SEND_ZC: the first CQE carries the byte count and, with F_MORE, says a
 * notification follows once the kernel let go of the pages; the future
 * completes only then, with the count kept from the first. */
#define ZC_GOT_RES 1u

static void send_zc_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	if (!(flags & IORING_CQE_F_NOTIF)) {
		op->meta.u64[0] = (uint64_t)(int64_t)res;
		op->aux |= ZC_GOT_RES;
		if (!(flags & IORING_CQE_F_MORE))
			io_finish(op, res);
		return;
	}
	io_finish(op, (op->aux & ZC_GOT_RES) ? (int32_t)(int64_t)op->meta.u64[0]
					     : res);
}

halo_fut *halo_send_zc_at(halo_loop *loop, int fd, const void *buf, size_t len,
			  int flags, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	if (!(loop->features & HALO_FEAT_SEND_ZC))
		return halo_send_at(loop, fd, buf, len, flags, file, line);
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	op = io_op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	io_uring_prep_send_zc(sqe, fd, buf, len, flags, 0);
	op->on_cqe = send_zc_cqe;
	return &op->fut;
}

halo_fut *halo_send_all_at(halo_loop *loop, int fd, const void *buf,
			   size_t len, int flags, const char *file, int line)
{
	uint8_t opcode = IORING_OP_SEND;

	if (loop->opts.send_zc_min && len >= loop->opts.send_zc_min &&
	    (loop->features & HALO_FEAT_SEND_ZC))
		opcode = IORING_OP_SEND_ZC;
	return halo__io_rw_all(loop, opcode, fd, (void *)buf, len, -1,
			       flags | MSG_NOSIGNAL, file, line);
}

/* sendmsg/recvmsg metadata: the kernel reads the msghdr and the iovec array
 * at submit, so both live in the op. */
struct msg_meta {
	struct msghdr msg;
	struct iovec iov[4];
	union {
		struct msghdr *user; /* recvmsg: where the results go back */
		int32_t zc_res; /* SENDMSG_ZC: the byte count, until notified */
	};
};
_Static_assert(sizeof(struct msg_meta) <= HALO_OP_META, "msg_meta too big");

/* op->aux bits above the iovec count (at most IOV_MAX): a SENDMSG_ZC, and
 * one whose byte count came and is kept in msg_meta.zc_res until its
 * notification. */
#define MSG_ZC (1u << 14)
#define MSG_ZC_GOT_RES (1u << 15)
#define MSG_IOV_N(op) ((op)->aux & IO_AUX_OWN_MASK & ~(MSG_ZC | MSG_ZC_GOT_RES))

static void msg_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct msg_meta *m = (struct msg_meta *)&op->meta;
	bool is_zc = op->aux & MSG_ZC;

	if (is_zc && !(flags & IORING_CQE_F_NOTIF)) {
		m->zc_res = res;
		op->aux |= MSG_ZC_GOT_RES;
	} else if (is_zc && (op->aux & MSG_ZC_GOT_RES)) {
		res = m->zc_res; /* the notification: the pages are free */
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	if (!is_zc && m->user && res >= 0 && !(op->fut.flags & FUT_NOPPED)) {
		m->user->msg_namelen = m->msg.msg_namelen;
		m->user->msg_controllen = m->msg.msg_controllen;
		m->user->msg_flags = m->msg.msg_flags;
	}
	if (op->ctx) {
		halo_mem_free(op->fut.loop, op->ctx,
			      MSG_IOV_N(op) * sizeof(struct iovec));
		op->ctx = NULL;
	}
	io_finish(op, res);
}

static halo_fut *msg_start(halo_loop *loop, bool is_recv, bool is_zc, int fd,
			   const struct msghdr *msg, int flags,
			   const char *file, int line)
{
	struct io_uring_sqe *sqe;
	struct msg_meta *m;
	struct iovec *iov = NULL;
	halo_op *op;

	if (msg->msg_iovlen > IOV_MAX)
		return NULL;
	op = halo__op_new(loop, file, line);
	if (!op)
		return NULL;
	m = (struct msg_meta *)&op->meta;
	m->msg = *msg;
	m->user = is_recv ? (struct msghdr *)msg : NULL;
	if (msg->msg_iovlen) {
		iov = halo__io_iov_copy(op, msg->msg_iov, (int)msg->msg_iovlen,
					m->iov, 4);
		if (!iov) {
			halo__op_abort(op);
			return NULL;
		}
	}
	m->msg.msg_iov = iov;
	op->on_cqe = msg_cqe;
	if (is_zc)
		op->aux |= MSG_ZC; /* after the copy, which sets the count */
	sqe = halo__op_sqe(op);
	if (!sqe) {
		if (op->ctx)
			halo_mem_free(loop, op->ctx,
				      msg->msg_iovlen * sizeof(*iov));
		halo__op_abort(op);
		return NULL;
	}
	if (is_recv)
		io_uring_prep_recvmsg(sqe, fd, &m->msg, (unsigned)flags);
	else if (is_zc)
		io_uring_prep_sendmsg_zc(sqe, fd, &m->msg, (unsigned)flags);
	else
		io_uring_prep_sendmsg(sqe, fd, &m->msg, (unsigned)flags);
	return &op->fut;
}

halo_fut *halo_sendmsg_at(halo_loop *loop, int fd, const struct msghdr *msg,
			  int flags, const char *file, int line)
{
	return msg_start(loop, false, false, fd, msg, flags, file, line);
}

halo_fut *halo_sendmsg_zc_at(halo_loop *loop, int fd, const struct msghdr *msg,
			     int flags, const char *file, int line)
{
	bool is_zc = loop->features & HALO_FEAT_SEND_ZC;

	return msg_start(loop, false, is_zc, fd, msg, flags, file, line);
}

halo_fut *halo_recvmsg_at(halo_loop *loop, int fd, struct msghdr *msg,
			  int flags, const char *file, int line)
{
	return msg_start(loop, true, false, fd, msg, flags, file, line);
}

halo_fut *halo_shutdown_at(halo_loop *loop, int fd, int how, const char *file,
			   int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_shutdown(sqe, fd, how);
	return &op->fut;
}

/* --- provided buffer rings --- */

/* On an incremental ring (HALO_BUFRING_INC with HALO_FEAT_PBUF_INC) the
 * kernel hands a buffer out piece by piece, each CQE's data starting where
 * the buffer's previous piece ended (the kernel keeps no offset of its own:
 * it advances the ring entry's addr and len, so the CQEs of one buffer come
 * in the order it consumed them). halo keeps, per buffer, how far the kernel
 * got and which pieces are out; a buffer goes back to the ring when the
 * kernel is done with it (a CQE without BUF_MORE) and its last piece came
 * back. Pieces of one buffer may belong to different recvs. */
#define NO_PIECE UINT32_MAX

struct inc_buf {
	uint32_t off;	 /* bytes the kernel consumed of it */
	uint32_t first;	 /* its oldest piece out, or NO_PIECE */
	uint32_t last;	 /* its newest piece out */
	uint32_t pieces; /* pieces out */
	bool is_used;	 /* the kernel is done with it */
};

struct piece {
	halo_op *owner; /* the recv that handed it out */
	uint32_t off;
	uint32_t next; /* the buffer's next piece, or the free list's */
	uint32_t prev; /* the buffer's previous piece, or NO_PIECE */
	uint16_t bid;
};

struct halo_bufring {
	halo_loop *loop;
	struct io_uring_buf_ring *ring;
	char *mem;
	size_t buf_size;
	size_t ring_bytes;
	unsigned nbufs;
	unsigned mask;
	unsigned avail;
	uint16_t bgid;
	int8_t mshot_cap; /* the kernel takes a recv's byte cap: 1 yes, -1 no,
			     0 not known yet */
	uint64_t pauses;
	unsigned handles; /* recvs that may still touch the ring */
	void (*on_idle)(halo_bufring *br, void *arg);
	void *on_idle_arg;
	halo_op **owner;  /* per bid: the recv that handed it out, or NULL */
	uint16_t *pos;	  /* per bid: the ring slot it was last put in */
	halo_op *starved; /* recvs parked on -ENOBUFS, oldest first */
	halo_op *starved_tail;
	unsigned flags;	     /* HALO_BUFRING_* asked for */
	bool is_inc;	     /* the kernel consumes buffers incrementally */
	struct inc_buf *inc; /* per bid, on an incremental ring */
	struct piece *piece; /* pieces out and free ones, grown on demand */
	uint32_t piece_cap;
	uint32_t piece_free; /* free list head, or NO_PIECE */
	uint32_t *slot;	     /* pieces out by (bid, off): an open-addressed
				table of 2 * piece_cap, NO_PIECE when empty */
	uint64_t pieces_out;
	uint64_t pieces_total;
	uint64_t bufs_used;  /* buffers the kernel took (whole or finished) */
	uint64_t part_bytes; /* what the kernel used of buffers still in it */
	size_t mem_mapped;   /* bytes of mem mapped for huge pages, else 0 */
};

#define HUGE_PAGE (2u << 20)

/* The buffers' memory. From 2 MiB up it lies on transparent huge pages
 * where the kernel has them (HALO_FEAT_HUGE_BUFS): the kernel's copy into a
 * buffer and the reader's copy out of it then rarely miss the TLB, where
 * with 4 KiB pages nearly every receive (its own buffer, its own page)
 * would. */
static int alloc_bufs(halo_bufring *br, halo_loop *loop)
{
	size_t n = br->nbufs * br->buf_size;
	char *base, *at;

	if (!(loop->features & HALO_FEAT_HUGE_BUFS) || n < HUGE_PAGE)
		return posix_memalign((void **)&br->mem, 4096, n) ? -ENOMEM : 0;
	/* A mapping of its own, aligned by trimming: the hint then marks no
	 * memory the allocator would later hand to someone else. */
	n = (n + HUGE_PAGE - 1) & ~((size_t)HUGE_PAGE - 1);
	base = mmap(NULL, n + HUGE_PAGE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return -ENOMEM;
	at = (char *)(((uintptr_t)base + HUGE_PAGE - 1) &
		      ~((uintptr_t)HUGE_PAGE - 1));
	if (at > base)
		munmap(base, (size_t)(at - base));
	munmap(at + n, (size_t)(base + HUGE_PAGE - at));
	br->mem = at;
	br->mem_mapped = n;
	/* Only hints: without them the pages are 4 KiB, as before. The ring
	 * hands out every buffer in turn, so all of it is touched soon
	 * anyway: fault it in now, not on the receive path (a huge page
	 * takes a 2 MiB clear, which the first receives into it would pay;
	 * MADV_POPULATE_WRITE is Linux 5.14). */
	if (!madvise(br->mem, n, MADV_HUGEPAGE))
		(void)madvise(br->mem, n, MADV_POPULATE_WRITE);
	return 0;
}

static void free_bufs(halo_bufring *br)
{
	if (br->mem_mapped)
		munmap(br->mem, br->mem_mapped);
	else
		free(br->mem);
}

/* Where a piece of bid at off is first looked for in br->slot: a return
 * by address finds its piece in a probe or two however many pieces of the
 * buffer are out before it (a walk of the buffer's list would pass every
 * older piece still held, on every return behind them). */
static uint32_t slot_home(const halo_bufring *br, uint16_t bid, uint32_t off)
{
	uint64_t h = (((uint64_t)bid << 32) | off) * 0x9E3779B97F4A7C15ull;

	return (uint32_t)(h >> 32) & (br->piece_cap * 2 - 1);
}

static void slot_put(halo_bufring *br, uint32_t i)
{
	uint32_t mask = br->piece_cap * 2 - 1;
	uint32_t s = slot_home(br, br->piece[i].bid, br->piece[i].off);

	while (br->slot[s] != NO_PIECE)
		s = (s + 1) & mask;
	br->slot[s] = i;
}

/* Empty slot s, moving back the entries after it that probed past it (the
 * table has no tombstones, so lookups stop at the first empty slot). */
static void slot_del(halo_bufring *br, uint32_t s)
{
	uint32_t mask = br->piece_cap * 2 - 1;

	for (uint32_t j = (s + 1) & mask; br->slot[j] != NO_PIECE;
	     j = (j + 1) & mask) {
		const struct piece *p = &br->piece[br->slot[j]];
		uint32_t home = slot_home(br, p->bid, p->off);

		/* j's entry may move to s if s lies on its probe path,
		 * home .. j (cyclically) */
		if (((j - home) & mask) >= ((j - s) & mask)) {
			br->slot[s] = br->slot[j];
			s = j;
		}
	}
	br->slot[s] = NO_PIECE;
}

/* Make room for at least one more piece: the pool doubles, so it grows a
 * few times while the loop warms up and no more. Pieces link by index, so
 * moving the array moves nothing that points into it; the table is rebuilt
 * from the buffers' lists. */
static bool piece_grow(halo_bufring *br)
{
	uint32_t cap = br->piece_cap ? br->piece_cap * 2 : br->nbufs * 4;
	uint32_t *slot;
	struct piece *p;

	if (cap <= br->piece_cap || cap > (1u << 30))
		return false;
	slot = malloc((size_t)cap * 2 * sizeof(*slot));
	if (!slot)
		return false;
	p = realloc(br->piece, cap * sizeof(*p));
	if (!p) {
		free(slot);
		return false;
	}
	for (uint32_t i = br->piece_cap; i < cap; i++)
		p[i].next = i + 1 < cap ? i + 1 : br->piece_free;
	br->piece_free = br->piece_cap;
	br->piece = p;
	br->piece_cap = cap;
	free(br->slot);
	br->slot = slot;
	memset(slot, 0xff, (size_t)cap * 2 * sizeof(*slot));
	for (unsigned b = 0; b < br->nbufs; b++)
		for (uint32_t i = br->inc[b].first; i != NO_PIECE;
		     i = p[i].next)
			slot_put(br, i);
	return true;
}

static int inc_init(halo_bufring *br)
{
	br->inc = calloc(br->nbufs, sizeof(*br->inc));
	if (!br->inc)
		return -ENOMEM;
	for (unsigned i = 0; i < br->nbufs; i++)
		br->inc[i].first = br->inc[i].last = NO_PIECE;
	br->piece_free = NO_PIECE;
	return piece_grow(br) ? 0 : -ENOMEM;
}

halo_bufring *halo_bufring_new_opts(halo_loop *loop, uint16_t bgid,
				    unsigned nbufs, size_t buf_size,
				    const halo_bufring_opts *opts, int *err)
{
	unsigned flags = opts ? opts->flags : 0;
	struct io_uring_buf_reg reg;
	halo_bufring *br;
	int r = -ENOMEM;

	if (!nbufs || nbufs > 32768 || (nbufs & (nbufs - 1)) || !buf_size ||
	    buf_size > UINT32_MAX || (flags & ~(unsigned)HALO_BUFRING_INC)) {
		r = -EINVAL;
		goto fail;
	}
	br = calloc(1, sizeof(*br));
	if (!br)
		goto fail;
	br->loop = loop;
	br->flags = flags;
	br->is_inc =
	    (flags & HALO_BUFRING_INC) && (loop->features & HALO_FEAT_PBUF_INC);
	br->nbufs = nbufs;
	br->mask = (unsigned)io_uring_buf_ring_mask(nbufs);
	br->buf_size = buf_size;
	br->bgid = bgid;
	/* The kernel wants the ring page aligned; liburing 2.3 has no
	 * io_uring_setup_buf_ring, so map it by hand. */
	br->ring_bytes = nbufs * sizeof(struct io_uring_buf);
	br->ring = mmap(NULL, br->ring_bytes, PROT_READ | PROT_WRITE,
			MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br->ring == MAP_FAILED)
		goto fail_br;
	br->owner = calloc(nbufs, sizeof(*br->owner));
	br->pos = calloc(nbufs, sizeof(*br->pos));
	if (!br->owner || !br->pos)
		goto fail_owner;
	if (br->is_inc && inc_init(br) < 0)
		goto fail_owner;
	if (alloc_bufs(br, loop))
		goto fail_owner;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
	reg.ring_entries = nbufs;
	reg.bgid = bgid;
	if (br->is_inc)
		reg.pad = HALO_IOU_PBUF_RING_INC; /* flags, in liburing 2.3 */
	r = io_uring_register_buf_ring(&loop->ring, &reg, 0);
	if (r < 0)
		goto fail_mem;
	io_uring_buf_ring_init(br->ring);
	for (unsigned i = 0; i < nbufs; i++) {
		io_uring_buf_ring_add(br->ring, br->mem + i * buf_size,
				      (unsigned)buf_size, (unsigned short)i,
				      (int)br->mask, (int)i);
		br->pos[i] = (uint16_t)i;
	}
	io_uring_buf_ring_advance(br->ring, (int)nbufs);
	br->avail = nbufs;
	return br;
fail_mem:
	free_bufs(br);
fail_owner:
	free(br->owner);
	free(br->pos);
	free(br->inc);
	free(br->piece);
	free(br->slot);
	munmap(br->ring, br->ring_bytes);
fail_br:
	free(br);
fail:
	if (err)
		*err = r;
	return NULL;
}

halo_bufring *halo_bufring_new(halo_loop *loop, uint16_t bgid, unsigned nbufs,
			       size_t buf_size, int *err)
{
	return halo_bufring_new_opts(loop, bgid, nbufs, buf_size, NULL, err);
}

int halo_bufring_is_inc(const halo_bufring *br)
{
	return br->is_inc;
}

void halo_bufring_stats_get(const halo_bufring *br, halo_bufring_stats *out)
{
	out->avail = br->avail;
	out->is_inc = br->is_inc;
	out->pieces_out = br->pieces_out;
	out->pieces = br->pieces_total;
	out->bufs_used = br->bufs_used;
	out->bytes_free = br->avail * br->buf_size - br->part_bytes;
}

void *halo_bufring_buf(const halo_bufring *br, uint16_t bid)
{
	return br->mem + (size_t)bid * br->buf_size;
}

size_t halo_bufring_buf_size(const halo_bufring *br)
{
	return br->buf_size;
}

unsigned halo_bufring_avail(const halo_bufring *br)
{
	return br->avail;
}

uint64_t halo_bufring_pauses(const halo_bufring *br)
{
	return br->pauses;
}

unsigned halo_bufring_handles(const halo_bufring *br)
{
	return br->handles;
}

void halo_bufring_on_idle(halo_bufring *br,
			  void (*fn)(halo_bufring *br, void *arg), void *arg)
{
	br->on_idle = fn;
	br->on_idle_arg = arg;
}

int halo_bufring_free(halo_bufring *br)
{
	int r;

	/* A recv's CQEs and buffer returns still land in the ring; at loop
	 * close the kernel has let go of everything. */
	if (br->handles && !br->loop->closing)
		return -EBUSY;
	r = io_uring_unregister_buf_ring(&br->loop->ring, br->bgid);

	free_bufs(br);
	free(br->owner);
	free(br->pos);
	free(br->inc);
	free(br->piece);
	free(br->slot);
	munmap(br->ring, br->ring_bytes);
	free(br);
	return r;
}

/* --- multishot recv --- */

/* A recv is PARKED when the kernel holds no request of it: for want of ring
 * buffers (STARVED, on the ring's list), because it holds max_held buffers
 * (PAUSED), or for the moment between a recv's last CQE and its re-arm.
 * PAUSED without PARKED means the pause's cancel is on its way (CANCELLING)
 * and the recv's last CQE will park it. */
enum {
	MS_STOPPED = 1,
	MS_ENDED = 2,
	MS_PARKED = 4,
	MS_STARVED = 8,
	MS_PAUSED = 16,
	MS_CANCELLING = 32,
	MS_CAPPED = 64, /* the armed recv carries a byte cap */
	MS_UNHOOKED = 128, /* no longer counted in br->handles */
	MS_BUNDLE = 256,   /* armed with IORING_RECVSEND_BUNDLE */
	MS_NOMEM = 512,	   /* stopped by halo: -ENOMEM for the callback */
};

struct recv_ms {
	halo_recv_ms_cb cb;
	void *arg;
	halo_bufring *br;
	uint64_t rearms;
	uint64_t pauses;
	halo_op *next; /* on br's starved list */
	int fd;
	unsigned state;
	unsigned held; /* buffers handed out, not yet given back */
	unsigned held_peak;
	unsigned max_held;
	uint64_t cqes; /* CQEs with data */
	uint64_t bufs; /* buffers they filled */
};
_Static_assert(sizeof(struct recv_ms) <= HALO_OP_META, "recv_ms too big");

static inline struct recv_ms *rms_of(halo_op *op)
{
	return (struct recv_ms *)&op->meta;
}

static bool recv_arm(halo_op *op)
{
	struct recv_ms *s = rms_of(op);
	halo_bufring *br = s->br;
	struct io_uring_sqe *sqe = halo__op_sqe(op);
	uint64_t room;

	if (!sqe)
		return false;
	io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
	if (s->state & MS_BUNDLE)
		sqe->ioprio |= IORING_RECVSEND_BUNDLE;
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = br->bgid;
	io_apply_fixed(op, sqe);
	s->state &= ~(unsigned)MS_CAPPED;
	/* Not on an incremental ring: the cap counts bytes, max_held pieces
	 * there, and the CQE that ends a capped recv carries data yet may be
	 * posted after later CQEs of other recvs, whose pieces' offsets would
	 * then be wrong (halo adds up a buffer's pieces in CQE order). */
	if (s->max_held != HALO_RECV_MS_UNLIMITED && br->mshot_cap >= 0 &&
	    !br->is_inc) {
		/* The kernel fills buffers for as long as data comes in
		 * until it sees a cancel, a tick later: have it stop at the
		 * limit by itself (whole buffers; partial ones go past it). */
		assert(s->held < s->max_held);
		room = (uint64_t)(s->max_held - s->held) * br->buf_size;
		halo_uring_recv_mshot_cap(sqe, room < UINT32_MAX
						       ? (uint32_t)room
						       : UINT32_MAX);
		s->state |= MS_CAPPED;
	}
	return true;
}

/* The handle is over: complete its future and drop halo's reference; the
 * reaper drops the kernel's, if it holds one, and the last buffer given back
 * drops the one its held buffers keep. */
static void ms_end(halo_op *op, unsigned *state, int32_t res)
{
	*state |= MS_ENDED;
	if (halo__fut_pending(&op->fut))
		halo__op_finish(op, res);
	halo_fut_release(&op->fut);
}

/* An ended recv with no buffer out touches its ring no more. */
static void ring_unhook(struct recv_ms *s)
{
	if (s->state & MS_UNHOOKED)
		return;
	s->state |= MS_UNHOOKED;
	if (--s->br->handles == 0 && s->br->on_idle)
		s->br->on_idle(s->br, s->br->on_idle_arg);
}

/* End a recv. Every caller is past the recv's last CQE (or it was never
 * armed, or parked): the kernel holds nothing of it. */
static void recv_end(halo_op *op, int32_t res)
{
	struct recv_ms *s = rms_of(op);

	s->state |= MS_ENDED;
	if (!s->held)
		ring_unhook(s);
	ms_end(op, &s->state, res);
}

static void starve(halo_op *op)
{
	struct recv_ms *s = rms_of(op);
	halo_bufring *br = s->br;

	s->state |= MS_STARVED;
	s->next = NULL;
	if (br->starved_tail)
		rms_of(br->starved_tail)->next = op;
	else
		br->starved = op;
	br->starved_tail = op;
}

static void unstarve(halo_op *op)
{
	halo_bufring *br = rms_of(op)->br;
	halo_op *prev = NULL;

	if (!(rms_of(op)->state & MS_STARVED))
		return;
	for (halo_op *o = br->starved; o; prev = o, o = rms_of(o)->next) {
		if (o != op)
			continue;
		if (prev)
			rms_of(prev)->next = rms_of(o)->next;
		else
			br->starved = rms_of(o)->next;
		if (br->starved_tail == op)
			br->starved_tail = prev;
		break;
	}
	rms_of(op)->state &= ~(unsigned)MS_STARVED;
}

/* Re-arm a parked recv. False if no SQE could be had (the ring failed): the
 * caller ends the handle. */
static bool resume(halo_op *op)
{
	struct recv_ms *s = rms_of(op);

	unstarve(op);
	s->state &= ~(unsigned)MS_PARKED;
	if (!recv_arm(op))
		return false;
	s->rearms++;
	return true;
}

/* A parked recv free to run again: re-arm it, or, if the ring is dry, wait
 * on the ring's list for a buffer rather than collect an -ENOBUFS. */
static bool rearm_parked(halo_op *op)
{
	if (rms_of(op)->br->avail > 0)
		return resume(op);
	starve(op);
	return true;
}

/* Put bid back in the kernel's ring, and wake the oldest recv that starved
 * for want of one. */
static void ring_put(halo_bufring *br, uint16_t bid)
{
	halo_op *op;

	if (br->is_inc) {
		br->inc[bid].off = 0;
		br->inc[bid].is_used = false;
	}
	br->pos[bid] = (uint16_t)(br->ring->tail & br->mask);
	io_uring_buf_ring_add(br->ring, halo_bufring_buf(br, bid),
			      (unsigned)br->buf_size, bid, (int)br->mask, 0);
	io_uring_buf_ring_advance(br->ring, 1);
	br->avail++;
	op = br->starved;
	if (op && !br->loop->closing && !resume(op))
		recv_end(op, -EBUSY);
}

/* Buffer bid, or a piece of it, goes to the callback: the handle holds it,
 * and lives on while it holds any, so that a return after its end touches
 * live memory. */
static void hold(halo_op *op, uint16_t bid)
{
	struct recv_ms *s = rms_of(op);

	if (!s->br->is_inc)
		s->br->owner[bid] = op;
	s->br->pieces_out++;
	s->br->pieces_total++;
	if (s->held++ == 0)
		op->fut.refs++;
	if (s->held > s->held_peak)
		s->held_peak = s->held;
}

/* A buffer of op came back: resume op once it is down to half its limit. */
static void give_back(halo_op *op)
{
	struct recv_ms *s = rms_of(op);

	s->held--;
	if ((s->state & MS_PAUSED) && s->held <= s->max_held / 2) {
		s->state &= ~(unsigned)MS_PAUSED;
		if ((s->state & MS_PARKED) &&
		    !(s->state & (MS_STOPPED | MS_ENDED)) && !rearm_parked(op))
			recv_end(op, -EBUSY);
	}
	if (s->held == 0) {
		if (s->state & MS_ENDED)
			ring_unhook(s);
		halo__fut_unref(&op->fut);
	}
}

/* bid goes back to the ring once the kernel is done with it and no piece
 * of it is out. */
static void inc_settle(halo_bufring *br, uint16_t bid)
{
	if (br->inc[bid].is_used && !br->inc[bid].pieces)
		ring_put(br, bid);
}

/* Record a piece of bid at off, handed out by op. False when out of
 * memory. */
static bool piece_add(halo_bufring *br, uint16_t bid, uint32_t off, halo_op *op)
{
	struct inc_buf *ib = &br->inc[bid];
	uint32_t i;

	if (br->piece_free == NO_PIECE && !piece_grow(br))
		return false;
	i = br->piece_free;
	br->piece_free = br->piece[i].next;
	br->piece[i] = (struct piece){
	    .owner = op, .off = off, .next = NO_PIECE, .prev = ib->last,
	    .bid = bid};
	if (ib->last == NO_PIECE)
		ib->first = i;
	else
		br->piece[ib->last].next = i;
	ib->last = i;
	ib->pieces++;
	slot_put(br, i);
	return true;
}

/* Take bid's piece at off (NO_PIECE: its oldest) off its list and the
 * table; returns the recv that handed it out, or NULL if no such piece is
 * out. */
static halo_op *piece_take(halo_bufring *br, uint16_t bid, uint32_t off)
{
	struct inc_buf *ib = &br->inc[bid];
	uint32_t mask = br->piece_cap * 2 - 1, s, i;
	struct piece *p;

	if (off == NO_PIECE) {
		if (ib->first == NO_PIECE)
			return NULL;
		off = br->piece[ib->first].off;
	}
	for (s = slot_home(br, bid, off);; s = (s + 1) & mask) {
		i = br->slot[s];
		if (i == NO_PIECE)
			return NULL;
		if (br->piece[i].bid == bid && br->piece[i].off == off)
			break;
	}
	slot_del(br, s);
	p = &br->piece[i];
	if (p->prev == NO_PIECE)
		ib->first = p->next;
	else
		br->piece[p->prev].next = p->next;
	if (p->next == NO_PIECE)
		ib->last = p->prev;
	else
		br->piece[p->next].prev = p->prev;
	ib->pieces--;
	p->next = br->piece_free;
	br->piece_free = i;
	return p->owner;
}

static int inc_return(halo_bufring *br, uint16_t bid, uint32_t off)
{
	halo_op *op = piece_take(br, bid, off);

	if (!op)
		return -EINVAL;
	br->pieces_out--;
	inc_settle(br, bid);
	if (!br->loop->closing)
		give_back(op);
	return 0;
}

void halo_bufring_return(halo_bufring *br, uint16_t bid)
{
	halo_op *op;

	if (br->is_inc) {
		if (unlikely(inc_return(br, bid, NO_PIECE) < 0))
			assert(!"no piece of this buffer is out");
		return;
	}
	op = br->owner[bid];
	if (unlikely(!op)) {
		assert(!"buffer given back twice, or never handed out");
		return;
	}
	br->owner[bid] = NULL;
	br->pieces_out--;
	ring_put(br, bid);
	/* After halo_loop_close() the handles' memory is gone. */
	if (!br->loop->closing)
		give_back(op);
}

int halo_bufring_return_piece(halo_bufring *br, const void *data)
{
	const char *p = data;
	size_t at;
	uint16_t bid;

	if (!p || p < br->mem ||
	    p >= br->mem + (size_t)br->nbufs * br->buf_size)
		return -EINVAL;
	at = (size_t)(p - br->mem);
	bid = (uint16_t)(at / br->buf_size);
	if (br->is_inc)
		return inc_return(br, bid, (uint32_t)(at % br->buf_size));
	if (at % br->buf_size || !br->owner[bid])
		return -EINVAL;
	halo_bufring_return(br, bid);
	return 0;
}

/* Pause: ask the kernel to end the multishot; its last CQE parks the recv.
 * Not halo_fut_cancel(): the handle's future is not being cancelled. */
static void pause_cancel(halo_op *op)
{
	struct io_uring_sqe *sqe = halo__loop_sqe(op->fut.loop);

	if (!sqe)
		return; /* the next data CQE tries again */
	io_uring_prep_cancel64(sqe, halo__op_tag(op), 0);
	rms_of(op)->state |= MS_CANCELLING;
}

static void recv_call(halo_op *op, int res, void *data, uint16_t bid)
{
	struct recv_ms *s = rms_of(op);
	halo_loop *loop = op->fut.loop;

	loop->in_callback++;
	s->cb((halo_recv_ms *)op, res, data, bid, s->arg);
	loop->in_callback--;
}

static void recv_fail(halo_op *op)
{
	struct recv_ms *s = rms_of(op);

	s->state |= MS_ENDED;
	recv_call(op, -EBUSY, NULL, 0);
	recv_end(op, -EBUSY);
}

/* After a CQE that leaves the handle live: pause at the limit, or re-arm a
 * recv the kernel ended. */
static void recv_settle(halo_op *op)
{
	struct recv_ms *s = rms_of(op);

	if (s->state & (MS_STOPPED | MS_ENDED))
		return;
	if (s->held >= s->max_held && !(s->state & MS_PAUSED)) {
		s->state |= MS_PAUSED;
		s->pauses++;
		s->br->pauses++;
	}
	if (s->state & MS_PAUSED) {
		if (!(s->state & (MS_PARKED | MS_CANCELLING)))
			pause_cancel(op);
		return;
	}
	/* The new recv goes out after every CQE of the old one was seen, so
	 * no byte is lost or overtaken. */
	if ((s->state & MS_PARKED) && !rearm_parked(op))
		recv_fail(op);
}

/* Whether a last CQE without data leaves the handle live. -ENOBUFS: the
 * ring ran dry and the bytes wait in the socket. An -ECANCELED nobody asked
 * of the handle: a pause took effect. An -EINVAL to a byte cap not known to
 * work: the kernel predates caps, so go on without them (the pause's cancel
 * still bounds what the kernel takes). */
static bool recv_goes_on(halo_op *op, int32_t res)
{
	struct recv_ms *s = rms_of(op);

	if (res == -ENOBUFS)
		return true;
	if (res == -ECANCELED)
		return !(op->fut.flags & FUT_CANCEL_REQ);
	if (res == -EINVAL && (s->state & MS_CAPPED) && s->br->mshot_cap <= 0) {
		s->br->mshot_cap = -1;
		return true;
	}
	return false;
}

/* How many buffers a CQE's res bytes filled: one, or with a bundle as many
 * as it takes (the kernel fills a bundle's buffers in order, each whole but
 * the last). */
static unsigned cqe_bufs(const struct recv_ms *s, int32_t res)
{
	/* Most bundles hold one buffer: no division for those. */
	if (res <= 0 || !(s->state & MS_BUNDLE) ||
	    (size_t)res <= s->br->buf_size)
		return 1;
	return (unsigned)(((size_t)res + s->br->buf_size - 1) /
			  s->br->buf_size);
}

/* Buffer i of a bundle that starts with bid: the kernel took a bundle's
 * buffers from consecutive ring slots, so it is whichever bid halo put i
 * slots after bid's. Returns going on meanwhile cannot have overwritten that
 * slot: a slot is written again only after the ring's nbufs buffers all
 * went round, and the bundle's are still out. */
static uint16_t bundle_bid(const halo_bufring *br, uint16_t bid, unsigned i)
{
	if (!i)
		return bid;
	return br->ring->bufs[(br->pos[bid] + i) & br->mask].bid;
}

/* Hand the n buffers that res bytes filled to the callback, one call each;
 * after a stop made by one of the calls the rest go back to the ring. */
static void recv_deliver(halo_op *op, int32_t res, uint16_t bid, unsigned n)
{
	struct recv_ms *s = rms_of(op);
	halo_bufring *br = s->br;

	s->cqes++;
	s->bufs += n;
	for (unsigned i = 0; i < n; i++) {
		uint16_t b = bundle_bid(br, bid, i);
		int32_t len = res;

		if (n > 1 && (size_t)len > br->buf_size)
			len = (int32_t)br->buf_size;
		res -= len;
		if (s->state & (MS_STOPPED | MS_ENDED)) {
			ring_put(br, b);
			continue;
		}
		hold(op, b);
		recv_call(op, len, halo_bufring_buf(br, b), b);
	}
}

/* Out of memory for a piece's record: stop the recv as halo_recv_ms_stop()
 * does, and give the callback -ENOMEM once the kernel let go of it (at its
 * last CQE), so that the handle is over when its owner hears of it. */
static void recv_nomem(halo_op *op)
{
	struct recv_ms *s = rms_of(op);

	s->state |= MS_STOPPED | MS_NOMEM;
	if (!(s->state & MS_PARKED)) {
		halo_fut_cancel(&op->fut);
		return;
	}
	op->fut.flags |= FUT_CANCEL_REQ;
	s->state = (s->state | MS_ENDED) & ~(unsigned)MS_NOMEM;
	recv_call(op, -ENOMEM, NULL, 0);
	recv_end(op, -ENOMEM);
}

/* A CQE of an incremental ring: res bytes where bid's previous piece ended,
 * one piece for the callback. Out of memory for its record, the recv ends
 * with -ENOMEM (the piece's bytes are lost with it). */
static void recv_deliver_inc(halo_op *op, int32_t res, uint16_t bid,
			     unsigned used)
{
	struct recv_ms *s = rms_of(op);
	halo_bufring *br = s->br;
	uint32_t off = br->inc[bid].off;

	s->cqes++;
	s->bufs += used;
	br->inc[bid].off += (uint32_t)res;
	assert(br->inc[bid].off <= br->buf_size);
	if (unlikely(!piece_add(br, bid, off, op))) {
		inc_settle(br, bid);
		recv_nomem(op);
		return;
	}
	hold(op, bid);
	recv_call(op, res, halo_bufring_buf(br, bid) + off, bid);
}

/* Give back the n buffers of a CQE nobody is to see. */
static void recv_drop(halo_bufring *br, uint16_t bid, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		ring_put(br, bundle_bid(br, bid, i));
}

static void recv_ms_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct recv_ms *s = rms_of(op);
	halo_bufring *br = s->br;
	halo_loop *loop = op->fut.loop;
	bool more = flags & IORING_CQE_F_MORE;
	bool has_buf = flags & IORING_CQE_F_BUFFER;
	uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
	unsigned n;

	/* n: buffers the kernel took off the ring. On an incremental ring a
	 * piece with BUF_MORE leaves its buffer there, and a CQE without data
	 * consumed nothing (the kernel commits only what it received). */
	if (br->is_inc) {
		has_buf = has_buf && res > 0;
		n = has_buf && !(flags & IORING_CQE_F_BUF_MORE);
		if (n) {
			br->inc[bid].is_used = true;
			br->part_bytes -= br->inc[bid].off;
		} else if (has_buf) {
			br->part_bytes += (uint32_t)res;
		}
	} else {
		n = has_buf ? cqe_bufs(s, res) : 0;
	}
	br->avail -= n;
	br->bufs_used += n;
	if ((s->state & (MS_STOPPED | MS_ENDED)) ||
	    (loop->closing && res > 0)) {
		if (br->is_inc && has_buf) {
			br->inc[bid].off += (uint32_t)res;
			inc_settle(br, bid);
		} else if (!br->is_inc) {
			recv_drop(br, bid, n);
		}
		if (more || (s->state & MS_ENDED))
			return;
		if (s->state & MS_NOMEM) {
			s->state = (s->state | MS_ENDED) & ~(unsigned)MS_NOMEM;
			if (!loop->closing)
				recv_call(op, -ENOMEM, NULL, 0);
			res = -ENOMEM;
		}
		recv_end(op, res);
		return;
	}
	if (!more) /* the kernel holds nothing of this recv any more */
		s->state = (s->state | MS_PARKED) & ~(unsigned)MS_CANCELLING;
	if (res > 0) {
		if (s->state & MS_CAPPED)
			br->mshot_cap = 1;
		if (br->is_inc)
			recv_deliver_inc(op, res, bid, n);
		else
			recv_deliver(op, res, bid, n);
		recv_settle(op);
		return;
	}
	if (!br->is_inc)
		recv_drop(br, bid, n);
	if (more)
		return;
	if (!loop->closing && recv_goes_on(op, res)) {
		recv_settle(op);
		return;
	}
	s->state |= MS_ENDED;
	if (!loop->closing)
		recv_call(op, res, NULL, 0);
	recv_end(op, res);
}

halo_recv_ms *halo_recv_ms_start_opts(halo_loop *loop, int fd, halo_bufring *br,
				      halo_recv_ms_cb cb, void *arg,
				      const halo_recv_ms_opts *opts, int *err)
{
	unsigned max_held = opts ? opts->max_held : 0;
	unsigned flags = opts ? opts->flags : 0;
	struct recv_ms *s;
	halo_op *op;
	int r = -EINVAL;

	if (!br || !cb || (flags & ~(unsigned)HALO_RECV_MS_BUNDLE))
		goto fail;
	/* Bundles on an incremental ring: refused on every kernel (see
	 * net.h), so that code behaves alike with the feature on or off. */
	if ((flags & HALO_RECV_MS_BUNDLE) && (br->flags & HALO_BUFRING_INC))
		goto fail;
	if (fd < 0) {
		r = -EBADF;
		goto fail;
	}
	if (!max_held) {
		max_held = br->nbufs / 2 ? br->nbufs / 2 : 1;
		if (max_held > HALO_RECV_MS_HELD_DEFAULT)
			max_held = HALO_RECV_MS_HELD_DEFAULT;
	} else if (max_held > br->nbufs && max_held != HALO_RECV_MS_UNLIMITED) {
		goto fail;
	}
	r = -ENOMEM;
	op = halo__op_new(loop, __FILE__, __LINE__);
	if (!op)
		goto fail;
	s = rms_of(op);
	memset(s, 0, sizeof(*s));
	s->cb = cb;
	s->arg = arg;
	s->br = br;
	s->fd = fd;
	s->max_held = max_held;
	if ((flags & HALO_RECV_MS_BUNDLE) &&
	    (loop->features & HALO_FEAT_RECV_BUNDLE))
		s->state |= MS_BUNDLE;
	op->on_cqe = recv_ms_cqe;
	halo_fut_consume(&op->fut);
	op->fut.flags |= FUT_UNOWNED; /* a handle outlives its fiber */
	if (!recv_arm(op)) {
		halo__op_abort(op);
		r = -EBUSY;
		goto fail;
	}
	br->handles++;
	return (halo_recv_ms *)op;
fail:
	if (err)
		*err = r;
	return NULL;
}

halo_recv_ms *halo_recv_ms_start(halo_loop *loop, int fd, halo_bufring *br,
				 halo_recv_ms_cb cb, void *arg)
{
	return halo_recv_ms_start_opts(loop, fd, br, cb, arg, NULL, NULL);
}

int halo_recv_ms_stop(halo_recv_ms *h)
{
	halo_op *op = (halo_op *)h;
	struct recv_ms *s = rms_of(op);

	if (s->state & MS_NOMEM) {
		/* halo stopped it already; now nobody is to hear of it */
		s->state &= ~(unsigned)MS_NOMEM;
		return 0;
	}
	if (s->state & (MS_STOPPED | MS_ENDED))
		return -EALREADY;
	s->state |= MS_STOPPED;
	if (s->state & MS_PARKED) {
		/* Starved, paused, or inside the callback of a recv's last
		 * CQE: the kernel holds nothing, end it here. */
		unstarve(op);
		op->fut.flags |= FUT_CANCEL_REQ;
		recv_end(op, -ECANCELED);
		return 0;
	}
	halo_fut_cancel(&op->fut);
	return 0;
}

uint64_t halo_recv_ms_rearms(const halo_recv_ms *h)
{
	return rms_of((halo_op *)h)->rearms;
}

void halo_recv_ms_stats(const halo_recv_ms *h, halo_recv_stats *out)
{
	const struct recv_ms *s = rms_of((halo_op *)h);

	out->rearms = s->rearms;
	out->pauses = s->pauses;
	out->held = s->held;
	out->held_peak = s->held_peak;
	out->max_held = s->max_held;
	out->is_paused = !!(s->state & MS_PAUSED);
	out->is_bundle = !!(s->state & MS_BUNDLE);
	out->cqes = s->cqes;
	out->bufs = s->bufs;
	out->is_capped = s->max_held != HALO_RECV_MS_UNLIMITED &&
			 s->br->mshot_cap > 0 && !s->br->is_inc;
}

/* --- multishot accept --- */

struct accept_ms {
	halo_accept_ms_cb cb;
	void *arg;
	int fd;
	int flags;
	unsigned state;
};

static inline struct accept_ms *ams_of(halo_op *op)
{
	return (struct accept_ms *)&op->meta;
}

static bool accept_arm(halo_op *op)
{
	struct accept_ms *s = ams_of(op);
	struct io_uring_sqe *sqe = halo__op_sqe(op);

	if (!sqe)
		return false;
	io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL, s->flags);
	io_apply_fixed(op, sqe);
	return true;
}

static void accept_call(halo_op *op, int res)
{
	struct accept_ms *s = ams_of(op);
	halo_loop *loop = op->fut.loop;

	loop->in_callback++;
	s->cb((halo_accept_ms *)op, res, s->arg);
	loop->in_callback--;
}

static void accept_ms_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct accept_ms *s = ams_of(op);
	halo_loop *loop = op->fut.loop;
	bool more = flags & IORING_CQE_F_MORE;

	if ((s->state & (MS_STOPPED | MS_ENDED)) || loop->closing) {
		if (res >= 0 && !(op->fut.flags & FUT_NOPPED))
			close(res); /* accepted after the stop: nobody owns it */
		if (!more && !(s->state & MS_ENDED))
			ms_end(op, &s->state, res < 0 ? res : -ECANCELED);
		return;
	}
	if (res < 0) {
		if (more)
			return;
		if (res == -ECONNABORTED || res == -EINTR || res == -EAGAIN) {
			if (accept_arm(op))
				return;
			res = -EBUSY;
		}
		s->state |= MS_ENDED;
		accept_call(op, res);
		ms_end(op, &s->state, res);
		return;
	}
	if (!more && !accept_arm(op)) {
		accept_call(op, res);
		/* No callback after a stop made by the one above. */
		if (!(s->state & MS_STOPPED))
			accept_call(op, -EBUSY);
		s->state |= MS_ENDED;
		ms_end(op, &s->state, -EBUSY);
		return;
	}
	accept_call(op, res);
}

halo_accept_ms *halo_accept_ms_start(halo_loop *loop, int fd, int flags,
				     halo_accept_ms_cb cb, void *arg)
{
	halo_op *op = halo__op_new(loop, __FILE__, __LINE__);
	struct accept_ms *s;

	if (!op)
		return NULL;
	s = ams_of(op);
	memset(s, 0, sizeof(*s));
	s->cb = cb;
	s->arg = arg;
	s->fd = fd;
	s->flags = flags;
	op->on_cqe = accept_ms_cqe;
	halo_fut_consume(&op->fut);
	op->fut.flags |= FUT_UNOWNED; /* a handle outlives its fiber */
	if (!accept_arm(op)) {
		halo__op_abort(op);
		return NULL;
	}
	return (halo_accept_ms *)op;
}

int halo_accept_ms_stop(halo_accept_ms *h)
{
	halo_op *op = (halo_op *)h;
	struct accept_ms *s = ams_of(op);

	if (s->state & (MS_STOPPED | MS_ENDED))
		return -EALREADY;
	s->state |= MS_STOPPED;
	halo_fut_cancel(&op->fut);
	return 0;
}
