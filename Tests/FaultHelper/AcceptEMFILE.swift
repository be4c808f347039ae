import Glibc
import RingExec
import Synchronization
import SystemPackage

/// `ring-fault-helper --accept-emfile`: runs a `connections()` stream while the descriptor table
/// is full (the soft `RLIMIT_NOFILE` lowered to just above what is open, the rest filled), with a
/// client waiting in the listen backlog. Once the stream has reported `EMFILE` twice (the accept
/// failed, was re-armed after a pause and failed again), one descriptor is freed and the
/// connection must arrive. With `--accept-emfile-shutdown` the executor shuts down instead while
/// the stream waits to re-arm: the stream must finish without an error (prints `ended=clean`). The stream starts after the limit is lowered: the kernel takes the
/// limit an accept works under when it prepares the request. Prints `emfile=<n> accepted=1`, or `error <description>`. A child
/// process because the limit is per process: the test runner's parallel tests would meet it too.
func acceptEMFILECheck(shutDown: Bool) -> Never {
    let done = Atomic<Bool>(false)
    Task.detached {
        var spare: [Int32] = []
        var original = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original)
        defer {
            for fd in spare { close(fd) }
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original)
        }
        do {
            let executor = try RingExecutor(entries: 16)
            defer { executor.shutdownGracefully() }
            let listener = try await executor.socket()
            try await executor.bind(listener, to: .loopback(port: 0))
            try await executor.listen(listener)
            let port = try await executor.localAddress(of: listener).port
            let client = try await executor.socket()
            // Fill every descriptor below a lowered soft limit.
            var lowered = original
            lowered.rlim_cur = rlim_t(client.rawValue + 16)
            guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered) == 0 else {
                throw Errno(rawValue: errno)
            }
            while true {
                let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
                if fd < 0 { break }
                spare.append(fd)
            }
            guard errno == EMFILE, !spare.isEmpty else { throw Errno(rawValue: errno) }
            try await executor.connect(client, to: .loopback(port: port))
            // After the limit is lowered: the kernel reads it when it prepares the accept.
            let emfile = Atomic<Int>(0)
            let stream = executor.connections(listener) { error in
                if error == .tooManyOpenFiles { emfile.add(1, ordering: .relaxed) }
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while emfile.load(ordering: .relaxed) < (shutDown ? 1 : 2) {
                guard ContinuousClock.now < deadline else { throw Errno.timedOut }
                try await executor.sleep(for: .milliseconds(2))
            }
            if shutDown {
                let consumer = Task {
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
                close(spare.removeLast())
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
    exit(0)
}
