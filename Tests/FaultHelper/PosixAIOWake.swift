import Glibc
import RingExec
import Synchronization
import SystemPackage

/// `ring-fault-helper --posix-aio-wake THREADS EXECUTORS`: caps glibc's aio helper threads at
/// THREADS (0: glibc's default of 20), starts EXECUTORS POSIX aio executors, and has each write
/// and read back a block, submitted from outside its loop thread (so every request needs a
/// wake-up). Prints `io=ok`, or hangs if a wake-up holds one of glibc's helpers (the test
/// runs this under `timeout`).
func posixAIOWakeCheck(threads: Int, executors count: Int) -> Never {
    if threads > 0 { RingExecutor.tunePOSIXAIO(threads: threads, requests: 64) }
    let done = Atomic<Bool>(false)
    Task.detached {
        do {
            let path = "/tmp/ring-fault-helper-aio-\(getpid())"
            defer { unlink(path) }
            let fd = try FileDescriptor.open(
                path, .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite)
            defer { try? fd.close() }
            var executors: [RingExecutor] = []
            for _ in 0..<count { executors.append(try RingExecutor(entries: 8, engine: .posixAIO)) }
            var ok = true
            for (index, executor) in executors.enumerated() {
                let bytes = Array(repeating: UInt8(index & 0xff), count: 512)
                let offset = UInt64(index * 512)
                let written = try await executor.write(fd, bytes: bytes, offset: offset)
                let back = try await executor.read(fd, upTo: 512, offset: offset)
                ok = ok && written == 512 && back == bytes
            }
            for executor in executors { executor.shutdownGracefully() }
            print(ok ? "io=ok" : "io=failed")
        } catch {
            print("error \(error)")
        }
        done.store(true, ordering: .releasing)
    }
    while !done.load(ordering: .acquiring) { usleep(1000) }
    exit(0)
}
