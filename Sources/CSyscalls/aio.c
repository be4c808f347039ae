// Linux only: off Linux, CSyscalls.c reports the header's #error and this file compiles to
// nothing, so that message stays the only one.
#if defined(__linux__)
#define _GNU_SOURCE
#include <aio.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "CSyscalls.h"

void cs_aio_init(int threads, int requests, int idleSeconds) {
    struct aioinit init = {0};
    init.aio_threads = threads;
    init.aio_num = requests;
    init.aio_idle_time = idleSeconds;
    aio_init(&init);
}

// The POSIX aio engine's wake-up signal. glibc's aio_suspend cannot wait on a descriptor, but a
// signal ends its wait with EINTR; the handler itself does nothing. SA_RESTART keeps the
// signal harmless to any other system call it might interrupt.
static void cs_wake_handler(int signal) { (void)signal; }
static int cs_wake_signal_number = -1;
static pthread_once_t cs_wake_once = PTHREAD_ONCE_INIT;

static void cs_install_wake_signal(void) {
    int sig = SIGRTMAX - 3;
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0) return;
    // Someone else's signal: leave it alone (the engine then waits in short slices instead).
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = cs_wake_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (sigaction(sig, &action, NULL) == 0) cs_wake_signal_number = sig;
}

int cs_aio_wake_signal(void) {
    pthread_once(&cs_wake_once, cs_install_wake_signal);
    return cs_wake_signal_number;
}

int cs_tgkill(int tid, int signal) {
    int saved = errno;
    return (int)cs_syscall_result(syscall(SYS_tgkill, getpid(), tid, signal), saved);
}

#endif  // defined(__linux__)
