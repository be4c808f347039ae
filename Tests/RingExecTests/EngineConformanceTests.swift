import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// The same suite on every engine: io_uring, libaio and POSIX aio. Data is checked byte for byte.
@Suite(.timeLimit(.minutes(3))) struct EngineConformanceTests {
    @Test(arguments: EngineKind.allCases)
    func bufferedWritesAndReads(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        #expect(executor.engineSelection.engine == engine)
        let file = try TemporaryFile()
        defer { file.remove() }
        let size = 1 << 20
        let chunk = 64 << 10
        for offset in stride(from: 0, to: size, by: chunk) {
            let written = try await executor.write(
                file.fd, bytes: pattern(count: chunk, from: offset), offset: UInt64(offset))
            #expect(written == chunk)
        }
        for offset in stride(from: 0, to: size, by: chunk) {
            let back = try await executor.read(file.fd, upTo: chunk, offset: UInt64(offset))
            #expect(back == pattern(count: chunk, from: offset), "offset \(offset)")
        }
        // Short reads at the end of the file, then 0 at and past it.
        #expect(
            try await executor.read(file.fd, upTo: 4096, offset: UInt64(size - 100))
                == pattern(count: 100, from: size - 100))
        #expect(try await executor.read(file.fd, upTo: 4096, offset: UInt64(size)).isEmpty)
        #expect(try await executor.read(file.fd, upTo: 4096, offset: UInt64(size + 12345)).isEmpty)
    }

    @Test(arguments: EngineKind.allCases)
    func directWritesAndReads(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(direct: true)
        defer { file.remove() }
        let block = 4096
        let buffer = alignedBuffer(64 * block)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: pattern(count: buffer.count))
        #expect(try await executor.write(file.fd, from: UnsafeRawBufferPointer(buffer), offset: 0) == buffer.count)
        let back = alignedBuffer(block)
        defer { back.deallocate() }
        for index in [0, 1, 17, 63] {
            back.initializeMemory(as: UInt8.self, repeating: 0)
            #expect(try await executor.read(file.fd, into: back, offset: UInt64(index * block)) == block)
            #expect(Array(back) == pattern(count: block, from: index * block), "block \(index)")
        }
        // Misaligned buffer, length or offset: EINVAL, and the executor keeps working.
        let misaligned = UnsafeMutableRawBufferPointer(rebasing: buffer[1..<(block + 1)])
        await #expect(throws: Errno.invalidArgument) {
            _ = try await executor.read(file.fd, into: misaligned, offset: 0)
        }
        await #expect(throws: Errno.invalidArgument) {
            _ = try await executor.read(file.fd, into: back, offset: 512 + 1)
        }
        #expect(try await executor.read(file.fd, into: back, offset: 0) == block)
    }

    @Test(arguments: EngineKind.allCases)
    func vectoredIO(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile()
        defer { file.remove() }
        let parts = [100, 4096, 7]
        let out = parts.map { UnsafeMutableRawBufferPointer.allocate(byteCount: $0, alignment: 16) }
        defer { out.forEach { $0.deallocate() } }
        var start = 0
        for part in out {
            part.copyBytes(from: pattern(count: part.count, from: start))
            start += part.count
        }
        let total = parts.reduce(0, +)
        if engine == .posixAIO {
            // POSIX aio has no vectored requests.
            await #expect(throws: EngineError.unsupported(operation: "writev", engine: .posixAIO)) {
                _ = try await executor.write(file.fd, from: out.map { UnsafeRawBufferPointer($0) }, offset: 0)
            }
            return
        }
        #expect(try await executor.write(file.fd, from: out.map { UnsafeRawBufferPointer($0) }, offset: 0) == total)
        let back = parts.reversed().map { UnsafeMutableRawBufferPointer.allocate(byteCount: $0, alignment: 16) }
        defer { back.forEach { $0.deallocate() } }
        #expect(try await executor.read(file.fd, into: back, offset: 0) == total)
        #expect(back.flatMap { Array($0) } == pattern(count: total))
    }

    @Test(arguments: EngineKind.allCases)
    func fsyncAndErrors(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 10_000))
        defer { file.remove() }
        try await executor.fsync(file.fd)
        try await executor.fsync(file.fd, dataOnly: true)
        await #expect(throws: Errno.badFileDescriptor) { try await executor.fsync(FileDescriptor(rawValue: 9999)) }
        await #expect(throws: Errno.badFileDescriptor) {
            _ = try await executor.read(FileDescriptor(rawValue: -1), upTo: 16, offset: 0)
        }
        let readOnly = try FileDescriptor.open(FilePath(file.path), .readOnly)
        defer { try? readOnly.close() }
        await #expect(throws: Errno.badFileDescriptor) {
            _ = try await executor.write(readOnly, bytes: [1, 2, 3], offset: 0)
        }
        // After the errors, the engine still works.
        #expect(try await executor.read(readOnly, upTo: 16, offset: 0) == pattern(count: 16))
        try await executor.nop()
    }

    @Test(arguments: EngineKind.allCases)
    func tenThousandConcurrentReads(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine, entries: 16) else { return }
        defer { executor.shutdownGracefully() }
        let blocks = 1024
        let expected = pattern(count: blocks * 4096)
        let file = try TemporaryFile(contents: expected)
        defer { file.remove() }
        let fd = file.fd
        let mismatches = try await executor.run { () async throws -> Int in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<10_000 {
                    group.addTask {
                        let block = (index &* 7919) % blocks
                        let bytes = try await executor.read(fd, upTo: 4096, offset: UInt64(block * 4096))
                        return sameBytes(bytes, expected, at: block * 4096) ? 0 : 1
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(mismatches == 0)
    }

    @Test(arguments: EngineKind.allCases)
    func cancellation(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let sleeper = Task { try await executor.sleep(for: .seconds(30)) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1), "the timer is armed before it is cancelled")
        sleeper.cancel()
        // CancellationError is the cancel's doing: a timer that ran its 30 s would return normally.
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        // A real timer fires with -ETIME internally and returns normally.
        try await executor.sleep(for: .milliseconds(5))
        guard engine != .posixAIO else { return }  // no poll on POSIX aio
        let pipe = try PipePair()
        defer { pipe.close() }
        let poller = Task { try await executor.poll(pipe.read, for: .readable) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1), "the poll is armed before it is cancelled")
        poller.cancel()
        await #expect(throws: CancellationError.self) { _ = try await poller.value }
        // And an uncancelled poll sees data.
        _ = try pipe.write.writeAll([UInt8(7)])
        let events = try await executor.poll(pipe.read, for: .readable)
        #expect(events.contains(.readable))
    }

    @Test(arguments: EngineKind.allCases)
    func shutdownWithWorkInFlight(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        let sleepers = (0..<200).map { _ in Task { try await executor.sleep(for: .seconds(60)) } }
        let file = try TemporaryFile(contents: pattern(count: 1 << 16))
        defer { file.remove() }
        let readers = (0..<50).map { i in
            Task { try await executor.read(file.fd, upTo: 4096, offset: UInt64(i % 16) * 4096) }
        }
        #expect(await waitForOperationsInFlight(executor, atLeast: 200), "the timers are armed before shutdown")
        let start = ContinuousClock.now
        executor.shutdownGracefully(deadline: .milliseconds(100))
        // Half the sleeps' 60 s: shutdown cancelled them at its deadline (milliseconds when alone;
        // room for sanitizers and the kernel matrix's emulated CPUs).
        #expect(ContinuousClock.now - start < .seconds(30), "shutdown did not cancel at its deadline")
        for sleeper in sleepers {
            if case .success = await sleeper.result { Issue.record("a 60 s sleep cannot have finished normally") }
        }
        for (i, reader) in readers.enumerated() {
            // Each read either completed with the right data or failed with a shutdown error.
            if case .success(let bytes) = await reader.result {
                #expect(bytes == pattern(count: 4096, from: (i % 16) * 4096))
            }
        }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) { try await executor.nop() }
    }

    /// `submitBatch` caps the requests per system call: 32 reads started in one tick go to the
    /// kernel in 8 calls of 4, not in one call of 32 (io_uring and libaio; POSIX aio ignores it).
    @Test(arguments: [EngineKind.ioURing, .libaio])
    func submitBatchSplitsSubmissions(engine: EngineKind) async throws {
        let file = try TemporaryFile()
        defer { file.remove() }
        let block = 4096
        _ = try file.fd.writeAll(toAbsoluteOffset: 0, pattern(count: 32 * block))
        var calls: [Int: Int] = [:]
        for batch in [4, Int.max] {
            guard let executor = try makeExecutor(engine, submitBatch: batch) else { return }
            defer { executor.shutdownGracefully() }
            let before = executor.systemCalls
            // 32 child tasks on the loop thread: all of them queue their read in the same tick.
            let matches = try await executor.run {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for index in 0..<32 {
                        group.addTask {
                            let bytes = try await executor.read(file.fd, upTo: block, offset: UInt64(index * block))
                            return bytes == pattern(count: block, from: index * block)
                        }
                    }
                    return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
            }
            #expect(matches == 32)
            calls[batch] = executor.systemCalls - before
        }
        print("\(engine): system calls for 32 reads: \(calls[4]!) with submitBatch 4, \(calls[Int.max]!) unlimited")
        #expect(calls[4]! >= 8)
        #expect(calls[Int.max]! < calls[4]!)
    }

    @Test(arguments: [EngineKind.libaio, .posixAIO])
    func unsupportedOperationsAreTyped(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        await #expect(throws: EngineError.unsupported(operation: "accept", engine: engine)) {
            _ = try await executor.accept(FileDescriptor(rawValue: 0))
        }
        await #expect(throws: EngineError.unsupported(operation: "openat", engine: engine)) {
            _ = try await executor.open("/tmp", .readOnly)
        }
        await #expect(throws: EngineError.unsupported(operation: "withTimeout", engine: engine)) {
            try await executor.withTimeout(.seconds(1)) { try await executor.nop() }
        }
        await #expect(throws: EngineError.unsupported(operation: "linked chain", engine: engine)) {
            _ = try await executor.submitChain([.nop()])
        }
        // Still usable afterwards.
        try await executor.nop()
    }
}
