// Test support only: reports what the system's <linux/io_uring.h> says, so the tests can check
// the package's own Swift ABI against it. The library never includes this header.
#ifndef SWIFT_RING_CKERNELHEADER_H
#define SWIFT_RING_CKERNELHEADER_H
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/// sizeof(struct epoll_event): 12 on x86_64, where the kernel packs it.
static inline size_t kh_epoll_event_size(void) { return sizeof(struct epoll_event); }

struct kh_entry {
    const char *name;
    unsigned long long value;
};

/// Constants (opcodes, flags, register opcodes) the system header defines, by kernel name.
const struct kh_entry *kh_constants(size_t *count);
/// Sizes ("sizeof io_uring_sqe") and field offsets ("io_uring_sqe.fd") from the system header.
const struct kh_entry *kh_layout(size_t *count);

/// Native AIO and statx facts from <linux/aio_abi.h> and <linux/stat.h>: struct sizes, field
/// offsets and the IOCB_* constants, for the libaio engine and FileStatus.
const struct kh_entry *kh_aio_stat_layout(size_t *count);

#endif
