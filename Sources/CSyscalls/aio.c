#define _GNU_SOURCE
#include <aio.h>

#include "CSyscalls.h"

void cs_aio_init(int threads, int requests, int idleSeconds) {
    struct aioinit init = {0};
    init.aio_threads = threads;
    init.aio_num = requests;
    init.aio_idle_time = idleSeconds;
    aio_init(&init);
}
