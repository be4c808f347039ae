import Glibc
import RingExec
import Synchronization
import SystemPackage

/// `ring-fault-helper --accept-emfile`: a `connections()` stream whose accept meets `EMFILE`.
/// The kernel takes the descriptor limit an accept works under when it prepares the request
/// (`io_accept_prep` reads `RLIMIT_NOFILE`), so the stream is armed while the soft limit is
/// lowered to just above what is open and every descriptor below it is taken; then the limit is
/// restored (the rest of the process, libdispatch among it, must not run out: its pool monitor
/// traps when it cannot open /proc files). A client connects: the accept fails with `EMFILE`,
/// which the stream must report and retry after a pause; the re-armed accept runs under the
/// restored limit and takes the connection. Prints `emfile=<n> accepted=1`, or `error ...`.
/// With `--accept-emfile-shutdown` the executor shuts down as soon as `EMFILE` is reported
/// (the stream waiting to re-arm): the stream must finish without an error (`ended=clean`).
/// A child process because the limit is per process.
func acceptEMFILECheck(shutDown: Bool) -> Never {
    let executor: RingExecutor
    do {
        executor = try RingExecutor(entries: 16)
    } catch {
        print("error \(error)")
        exit(0)
    }
    let done = Atomic<Bool>(false)
    // On the ring's thread, so that no libdispatch worker runs (its pool monitor traps when it
    // cannot open a /proc file, as it cannot while every descriptor is taken).
    Task.detached(executorPreference: executor) {
        var spare: [Int32] = []
        var original = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original)
        defer {
            for fd in spare { close(fd) }
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original)
        }
        do {
            let listener = try await executor.socket()
            try await executor.bind(listener, to: .loopback(port: 0))
            try await executor.listen(listener)
            let port = try await executor.localAddress(of: listener).port
            let client = try await executor.socket()
            // Take every descriptor below `limit`, then arm the stream under that soft limit,
            // restored as soon as the kernel has prepared the accept (the window in which the
            // process as a whole has no descriptor to spare stays a round trip long).
            let limit = client.rawValue + 16
            while spare.last.map({ $0 < limit - 1 }) ?? true {
                let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw Errno(rawValue: errno) }
                if fd >= limit {
                    close(fd)  // a hole above the limit: everything below it is taken
                    break
                }
                spare.append(fd)
            }
            var lowered = original
            lowered.rlim_cur = rlim_t(limit)
            guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered) == 0 else {
                throw Errno(rawValue: errno)
            }
            let emfile = Atomic<Int>(0)
            let stream = executor.connections(listener) { error in
                if error == .tooManyOpenFiles { emfile.add(1, ordering: .relaxed) }
            }
            // Queued after the accept: once it completes, the accept has been prepared.
            var failure: (any Error)?
            do { try await executor.nop() } catch { failure = error }
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original)
            if let failure { throw failure }
            try await executor.connect(client, to: .loopback(port: port))
            let deadline = ContinuousClock.now + .seconds(30)
            while emfile.load(ordering: .relaxed) < 1 {
                guard ContinuousClock.now < deadline else { throw Errno.timedOut }
                try await executor.sleep(for: .milliseconds(1))
            }
            if shutDown {
                let consumer = Task(executorPreference: executor) {
                    do {
                        for try await connection in stream { try? connection.close() }
                        return "ended=clean"
                    } catch {
                        return "ended=error \(error)"
                    }
                }
                await executor.shutdown(deadline: .seconds(5))
                print("\(await consumer.value) emfile=\(emfile.load(ordering: .relaxed))")
            } else {
                var accepted = 0
                for try await connection in stream {
                    accepted += 1
                    try? connection.close()
                    break
                }
                print("emfile=\(emfile.load(ordering: .relaxed)) accepted=\(accepted)")
            }
        } catch {
            print("error \(error)")
        }
        done.store(true, ordering: .releasing)
    }
    while !done.load(ordering: .acquiring) { usleep(1000) }
    executor.shutdownGracefully()
    exit(0)
}
