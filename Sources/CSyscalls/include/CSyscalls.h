// Raw system-call wrappers for io_uring. Each returns the kernel's result, or -errno on failure,
// and restores the caller's errno so no state leaks through the global. Besides those, only a few
// one-line libc helpers that Swift's Glibc module hides (they need _GNU_SOURCE or a missing
// header). Structures, constants and all logic are written in Swift (Sources/Ring, RingExec).
#ifndef SWIFT_RING_CSYSCALLS_H
#define SWIFT_RING_CSYSCALLS_H

// Linux only. On any other system the build stops here with this one message instead of
// dozens of missing-symbol errors; nothing below is read. Cross-platform packages depend on
// swift-ring with `condition: .when(platforms: [.linux])` (see the README).
#if !defined(__linux__)
#error "swift-ring requires Linux (io_uring, Linux AIO); depend on it with .when(platforms: [.linux])"
#else

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

// The three io_uring system calls share one number on every architecture that has them.
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_io_uring_enter
#define SYS_io_uring_enter 426
#endif
#ifndef SYS_io_uring_register
#define SYS_io_uring_register 427
#endif

static inline long cs_syscall_result(long r, int saved_errno) {
    if (r < 0) {
        r = -(long)errno;
        errno = saved_errno;
    }
    return r;
}

/// A system call with up to six arguments, made directly: the kernel's own return value (-errno
/// on failure), with `errno` never touched. On x86-64 and arm64 this is the `syscall`/`svc`
/// instruction itself (the Linux calling convention: number in rax/x8, arguments in
/// rdi rsi rdx r10 r8 r9 / x0-x5, result in rax/x0; the x86-64 instruction clobbers rcx and r11),
/// which saves libc's `syscall()` wrapper and its errno round trip on every `io_uring_enter`;
/// elsewhere it goes through `syscall()`.
static inline long cs_raw_syscall6(long number, long a1, long a2, long a3, long a4, long a5, long a6) {
#if defined(__x86_64__)
    long result;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = number;
    register long x0 __asm__("x0") = a1;
    register long x1 __asm__("x1") = a2;
    register long x2 __asm__("x2") = a3;
    register long x3 __asm__("x3") = a4;
    register long x4 __asm__("x4") = a5;
    register long x5 __asm__("x5") = a6;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
#else
    int saved = errno;
    return cs_syscall_result(syscall(number, a1, a2, a3, a4, a5, a6), saved);
#endif
}

/// io_uring_setup(2): `params` points at a 120-byte `io_uring_params`. Returns the ring fd.
static inline int cs_io_uring_setup(uint32_t entries, void *params) {
    return (int)cs_raw_syscall6(SYS_io_uring_setup, (long)entries, (long)params, 0, 0, 0, 0);
}

/// io_uring_enter(2). `arg` is a sigset (argsz = its size) or, with IORING_ENTER_EXT_ARG, an
/// `io_uring_getevents_arg` (argsz = its size). Returns the number of SQEs consumed.
static inline int cs_io_uring_enter(int fd, uint32_t to_submit, uint32_t min_complete,
                                    uint32_t flags, const void *arg, size_t argsz) {
    return (int)cs_raw_syscall6(SYS_io_uring_enter, fd, (long)to_submit, (long)min_complete, (long)flags,
                                (long)arg, (long)argsz);
}

/// io_uring_register(2). The meaning of the result depends on the opcode.
static inline int cs_io_uring_register(int fd, uint32_t opcode, const void *arg, uint32_t nr_args) {
    return (int)cs_raw_syscall6(SYS_io_uring_register, fd, (long)opcode, (long)arg, (long)nr_args, 0, 0);
}

/// prctl(2) (variadic in libc, so Swift cannot call it directly). Used by the test helper that
/// installs seccomp filters.
static inline int cs_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                           unsigned long a5) {
    int saved = errno;
    return (int)cs_syscall_result(syscall(SYS_prctl, option, a2, a3, a4, a5), saved);
}

/// The caller's thread id; used by tests and diagnostics, never on a hot path.
static inline int cs_gettid(void) {
    return (int)syscall(SYS_gettid);
}

/// O_DIRECT, which glibc only defines under _GNU_SOURCE (so Swift's Glibc module lacks it).
static inline int cs_o_direct(void) { return O_DIRECT; }

/// eventfd(2), close-on-exec, non-blocking when `nonblocking` is non-zero. Returns the fd or -errno.
static inline int cs_eventfd_mode(unsigned int initial, int nonblocking) {
    int saved = errno;
    int fd = eventfd(initial, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0));
    if (fd < 0) {
        fd = -errno;
        errno = saved;
    }
    return fd;
}

/// eventfd(2), non-blocking and close-on-exec (Swift's Glibc module lacks <sys/eventfd.h>).
/// Returns the fd or -errno.
static inline int cs_eventfd(unsigned int initial) {
    return cs_eventfd_mode(initial, 1);
}

/// pipe2(2) with O_CLOEXEC (hidden behind _GNU_SOURCE). Fills `fds` (read end, write end);
/// returns 0 or -errno.
static inline int cs_pipe_cloexec(int fds[2]) {
    int saved = errno;
    return (int)cs_syscall_result(syscall(SYS_pipe2, fds, O_CLOEXEC), saved);
}

/// aio_init(3): glibc's POSIX aio tuning (a GNU extension, hidden from Swift's Glibc module).
/// `threads` caps glibc's helper threads, `requests` sizes its request table, `idleSeconds` is
/// how long an idle helper lingers. Defined in aio.c: <aio.h> under _GNU_SOURCE must not leak
/// into this header, whose types Swift shares with its Glibc module.
void cs_aio_init(int threads, int requests, int idleSeconds);

/// The signal the POSIX aio engine sends its loop thread to end an `aio_suspend` early:
/// installs a do-nothing handler (with SA_RESTART) for SIGRTMAX-3 the first time, if that
/// signal still has its default disposition. Returns the signal, or -1 when it is taken.
int cs_aio_wake_signal(void);

/// tgkill(2) to a thread of this process by kernel thread id (which, unlike a `pthread_t`, is
/// not handed to the next thread as soon as one is joined). Returns 0 or -errno.
int cs_tgkill(int tid, int signal);

/// A number naming the calling thread, never reused within the process (unlike `pthread_t`,
/// which glibc hands to the next thread once a thread has been joined). Defined in
/// CSyscalls.c: one thread-local and one counter for the whole process.
uint64_t cs_thread_token(void);

/// Reads the current errno (for wrappers around libc calls that report through it).
static inline int cs_errno(void) { return errno; }

#endif  // defined(__linux__)

#endif
