// Almost every wrapper is static inline in the header; what needs one copy per process lives here.
// The header comes first and outside the guard: off Linux its #error is the build's one message.
#include "CSyscalls.h"

#if defined(__linux__)

#include <stdatomic.h>

// Thread tokens: the first call on a thread takes the next value of a process-wide counter and
// keeps it in a thread-local, so a token names one thread for the life of the process. 0 means
// "not taken yet"; the counter starts at 1 and 2^64 calls will not happen.
static _Atomic uint64_t cs_next_thread_token = 1;
static _Thread_local uint64_t cs_this_thread_token = 0;

uint64_t cs_thread_token(void) {
    uint64_t token = cs_this_thread_token;
    if (token == 0) {
        // Relaxed: only uniqueness matters, not ordering with other memory.
        token = atomic_fetch_add_explicit(&cs_next_thread_token, 1, memory_order_relaxed);
        cs_this_thread_token = token;
    }
    return token;
}

#endif  // defined(__linux__)
