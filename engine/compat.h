/*
 * compat.h - what liburing 2.3 (Debian 12) lacks for a 6.x kernel.
 *
 * 2.3's headers stop at IORING_OP_SENDMSG_ZC and carry two traps this
 * file routes around (see docs/ARCHITECTURE.md, "liburing 2.3"):
 *  - io_uring_prep_accept_direct(..., IORING_FILE_INDEX_ALLOC) writes 0
 *    ("not direct"); single-shot direct accept must pass ALLOC - 1.
 *  - io_uring_register_buf_ring() ignores its flags argument; ring flags
 *    go into reg.pad (the newer UAPI's "flags" field).
 * Everything here is a constant or a few SQE/register field writes.
 */
#ifndef CRUST_ENGINE_COMPAT_H
#define CRUST_ENGINE_COMPAT_H

#include <liburing.h>
#include <string.h>
#include <sys/mman.h>

#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Single-shot accept into an allocated direct slot (2.3 writes 0 here). */
static inline void compat_prep_accept_direct_alloc(struct io_uring_sqe *sqe, int fd,
						   struct sockaddr *addr, socklen_t *len,
						   int flags)
{
	io_uring_prep_accept(sqe, fd, addr, len, flags);
	sqe->file_index = IORING_FILE_INDEX_ALLOC;
}

/*
 * Register a provided-buffer ring in user memory (what 2.4's
 * io_uring_setup_buf_ring does). entries must be a power of two.
 * Returns the ring or NULL with *err = -errno.
 */
static inline struct io_uring_buf_ring *compat_setup_buf_ring(struct io_uring *ring,
							      unsigned entries, int bgid,
							      unsigned flags, int *err)
{
	size_t len = entries * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED) {
		*err = -ENOMEM;
		return NULL;
	}
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)mem;
	reg.ring_entries = entries;
	reg.bgid = (__u16)bgid;
	reg.pad = (__u16)flags; /* 2.3 drops its flags argument: set them here */
	int ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret < 0) {
		munmap(mem, len);
		*err = ret;
		return NULL;
	}
	struct io_uring_buf_ring *br = mem;
	io_uring_buf_ring_init(br);
	*err = 0;
	return br;
}

static inline void compat_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
					unsigned entries, int bgid)
{
	io_uring_unregister_buf_ring(ring, bgid);
	munmap(br, entries * sizeof(struct io_uring_buf));
}

/*
 * Publish 'count' buffers added with io_uring_buf_ring_add(). A release
 * store: the kernel must see the buffer entries before the new tail
 * (2.3's helper uses a plain store).
 */
static inline void compat_buf_ring_advance(struct io_uring_buf_ring *br, int count)
{
	unsigned short tail = br->tail;
	__atomic_store_n(&br->tail, (unsigned short)(tail + count), __ATOMIC_RELEASE);
}

/* MSG_RING carrying only data (2.3 has this); kept here to name the tag use. */
static inline void compat_prep_msg_ring_doorbell(struct io_uring_sqe *sqe, int ring_fd,
						 __u64 data)
{
	io_uring_prep_msg_ring(sqe, ring_fd, 0, data, 0);
}

#endif
