import Foundation
import Glibc
import Ring
import RingExec
import Synchronization
import SystemPackage
import Testing

/// Counts outcomes across tasks.
final class Tally: Sendable {
    let completed = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
}

/// Scale for the long tests: RING_STRESS_SCALE=0.05 under sanitizers (see .ci/run).
let stressScale: Double = ProcessInfo.processInfo.environment["RING_STRESS_SCALE"].flatMap(Double.init) ?? 1

/// Open file descriptors of this process.
func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

@Suite(.timeLimit(.minutes(5))) struct ReliabilityTests {
    /// 1,000,000 awaited operations (NOP, file read, file write, timeout, poll on a pipe) from 64
    /// tasks, 10% of them cancelled at random moments: each resumes exactly once (a second
    /// resume traps, a lost one hangs into the time limit), reads see the file's bytes, no
    /// operation fails, some cancellations win. From the executor's side: what it reports in
    /// flight never exceeds the 64 the tasks can have outstanding (one each) and reaches far
    /// above 1 (the load was concurrent), and nothing is in flight at the end.
    @Test func millionMixedOperationsWithCancellation() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        let expected = pattern(count: 1 << 20)
        let file = try TemporaryFile(contents: expected)
        defer { file.remove() }
        let pipe = try PipePair()
        defer { pipe.close() }
        _ = try pipe.write.writeAll([UInt8](repeating: 1, count: 16))  // poll on it is always ready
        let total = Int(1_000_000 * stressScale)
        let tasks = 64
        let tally = Tally()
        let (fd, readEnd) = (file.fd, pipe.read)

        // Samples the executor's in-flight count while the load runs (a measurement: the 1 ms
        // pause only spaces the samples).
        let running = Atomic<Bool>(true)
        let peak = Atomic<Int>(0)
        let sampler = Task.detached {
            while running.load(ordering: .relaxed) {
                peak.max(executor.operationsInFlight, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(1))
            }
        }

        try await executor.run {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<tasks {
                    group.addTask {
                        var random = SystemRandomNumberGenerator()
                        let share = total / tasks + (worker < total % tasks ? 1 : 0)
                        for i in 0..<share {
                            let kind = (i &+ worker) % 5
                            let block = UInt64(Int.random(in: 0..<256, using: &random) * 4096)
                            // The operation; a cancelled copy runs in a child task cancelled
                            // at a random point (before submission, in flight, or after).
                            @Sendable func operation() async throws {
                                switch kind {
                                case 0: try await executor.nop()
                                case 1:
                                    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
                                    defer { scratch.deallocate() }
                                    let n = try await executor.read(fd, into: scratch, offset: block)
                                    let same = expected.withUnsafeBytes {
                                        memcmp(scratch.baseAddress!, $0.baseAddress! + Int(block), 4096) == 0
                                    }
                                    if n != 4096 || !same { throw Errno.ioError }
                                case 2:
                                    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
                                    defer { scratch.deallocate() }
                                    // Rewrite the block with its own content: reads stay verifiable.
                                    expected.withUnsafeBytes {
                                        scratch.copyMemory(
                                            from: UnsafeRawBufferPointer(rebasing: $0[Int(block)..<Int(block) + 4096]))
                                    }
                                    _ = try await executor.write(
                                        fd, from: UnsafeRawBufferPointer(scratch), offset: block)
                                case 3: try await executor.sleep(for: .microseconds(Int.random(in: 1...200)))
                                default: _ = try await executor.poll(readEnd, for: .readable)
                                }
                            }
                            do {
                                if Int.random(in: 0..<10, using: &random) == 0 {
                                    let child = Task { try await operation() }
                                    for _ in 0..<Int.random(in: 0...3, using: &random) { await Task.yield() }
                                    child.cancel()
                                    try await child.value
                                } else {
                                    try await operation()
                                }
                                tally.completed.add(1, ordering: .relaxed)
                            } catch is CancellationError {
                                tally.cancelled.add(1, ordering: .relaxed)
                            } catch {
                                tally.failed.add(1, ordering: .relaxed)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        running.store(false, ordering: .relaxed)
        await sampler.value
        let highest = peak.load(ordering: .relaxed)
        #expect(highest <= tasks, "the executor reported \(highest) in flight; the tasks can have at most \(tasks)")
        #expect(
            highest >= tasks / 4, "the executor never had more than \(highest) in flight: the load was not concurrent")
        #expect(tally.failed.load(ordering: .relaxed) == 0)
        #expect(tally.cancelled.load(ordering: .relaxed) > 0, "some cancellations must have won")
        try await executor.nop()  // one more tick so the in-flight count is current
        #expect(executor.operationsInFlight == 0)
    }

    /// 100,000 operations through an 8-entry SQ (more in flight than the SQ holds, all the time).
    @Test func hundredThousandThroughAnEightEntrySQ() async throws {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let total = Int(100_000 * stressScale)
        let done = try await executor.run { () async throws -> Int in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for t in 0..<100 {
                    group.addTask {
                        var count = 0
                        for _ in 0..<(total / 100 + (t < total % 100 ? 1 : 0)) {
                            try await executor.nop()
                            count += 1
                        }
                        return count
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(done == total)
    }

    /// Teardown with thousands of operations in flight (reads on pipes nobody writes, long
    /// timeouts): done at the deadline, not after the sleeps, every task resumes with an error, and no
    /// descriptor (eventfd, ring, aio context's fd) is left open. Runs in a child process (the
    /// fault helper) so that other tests' descriptors do not disturb the count.
    @Test(arguments: EngineKind.allCases)
    func teardownWithThousandsInFlight(engine: EngineKind) async throws {
        guard let helper = ExampleTests.binary("ring-fault-helper"), !skippedUnderSanitizer(engine) else { return }
        let (_, text) = try await runProcess(helper, ["--teardown", engine.rawValue])
        if text.contains("engine is unavailable") {
            skip(engine.need, "teardown on \(engine): \(text)")
            return
        }
        var fields: [String: Int] = [:]
        for pair in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = pair.split(separator: "=")
            if parts.count == 2, let value = Int(parts[1]) { fields[String(parts[0])] = value }
        }
        #expect(fields["fds-before"] != nil && fields["fds-before"] == fields["fds-after"], "\(text)")
        // Shutdown cancels at its 200 ms deadline instead of waiting out the 120 s sleeps; 20 s
        // leaves room for sanitizers and emulated CPUs (the kernel matrix) without admitting that.
        #expect((fields["took-ms"] ?? .max) < 20_000, "\(text)")
        #expect(fields["succeeded"] == 0, "\(text)")
        // 2,000 timeouts, and 1,000 pipe reads on io_uring: all of them were in flight.
        #expect(fields["in-flight"] == (engine == .ioURing ? 3000 : 2000), "\(text)")
    }

    /// A pipe closed under a pending read, a file truncated under reads: the right result,
    /// nothing lost, the executor keeps working.
    @Test func descriptorsChangingUnderInFlightOperations() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        let reader = Task { try await executor.read(pipe.read, upTo: 8) }
        #expect(
            await waitForOperationsInFlight(executor, atLeast: 1), "the read is pending before the writer goes away")
        try pipe.write.close()  // the writer goes away: the pending read sees end of file
        #expect(try await reader.value == [])
        try? pipe.read.close()

        let file = try TemporaryFile(contents: pattern(count: 1 << 20))
        defer { file.remove() }
        let fd = file.fd
        let reads = (0..<64).map { i in Task { try await executor.read(fd, upTo: 4096, offset: UInt64(i) * 16384) } }
        try fd.resize(to: 100_000)
        for (i, read) in reads.enumerated() {
            let bytes = try await read.value
            let offset = i * 16384
            // Either before the truncation (full block) or after (short or empty): never garbage.
            #expect(
                bytes == pattern(count: 4096, from: offset)
                    || bytes == pattern(count: max(0, min(4096, 100_000 - offset)), from: offset))
        }
        try await executor.nop()
    }

    /// Checksummed blocks written, rewritten with cancellations mixed in, and verified on every
    /// engine, buffered and O_DIRECT (a small size here; CI runs 256 MiB per engine in release).
    @Test(.timeLimit(.minutes(2)), arguments: EngineKind.allCases)
    func dataIntegritySoakSmall(engine: EngineKind) async throws {
        guard let soak = ExampleTests.binary("ring-soak"), !skippedUnderSanitizer(engine) else { return }
        let (status, text) = try await runProcess(soak, ["--size", "4", "--engine", engine.rawValue])
        if status == 3 {  // the engine asked for cannot run here
            skip(engine.need, "ring-soak: \(text)")
            return
        }
        #expect(status == 0, "\(text)")
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix(" ") }
        #expect(lines.count == 2, "\(text)")
        for line in lines {
            #expect(line.contains(" 0 mismatches"), "\(line)")
        }
    }

    /// ring-soak refuses what it cannot do instead of running something else: bad arguments are
    /// errors (status 2), and an engine asked for that cannot run is a failure (status 3).
    @Test func soakRejectsBadArguments() async throws {
        guard let soak = ExampleTests.binary("ring-soak") else { return }
        for arguments in [
            ["--engine", "posix"], ["--engine", "io_uring,"], ["--size", "abc"], ["--size", "0"],
            ["--cancel-percent", "101"], ["--direct", "maybe"], ["--minutes", "-1"], ["--bogus", "1"], ["--size"],
        ] {
            let (status, text) = try await runProcess(soak, arguments, standardError: true)  // usage goes there
            #expect(status == 2, "ring-soak \(arguments.joined(separator: " ")) -> \(status): \(text)")
            #expect(text.contains("usage:"), "\(text)")
        }
    }

    /// RLIMIT_NOFILE nearly exhausted (in a child process: the limit is process-wide): open and
    /// socket fail with EMFILE as typed errors, and the executor keeps working.
    @Test func descriptorLimitGivesEMFILE() async throws {
        guard let helper = ExampleTests.binary("ring-fault-helper") else { return }
        if underThreadSanitizer {
            skip(
                .withoutTSan,
                "descriptorLimitGivesEMFILE under ThreadSanitizer: its report symbolizer needs descriptors the test takes away"
            )
            return
        }
        let (_, text) = try await runProcess(helper, ["--nofile"])
        #expect(text.contains("open=\(EMFILE) socket=\(EMFILE) after=ok"), "\(text)")
    }

    /// RLIMIT_MEMLOCK tiny and no CAP_IPC_LOCK (in a child that drops root): registering large
    /// fixed buffers fails with a typed ENOMEM, and the executor keeps working.
    @Test func memoryLockLimitGivesENOMEM() async throws {
        guard let helper = ExampleTests.binary("ring-fault-helper") else { return }
        let (_, text) = try await runProcess(helper, ["--memlock"])
        #expect(text.contains("memlock=\(ENOMEM) after=ok"), "\(text)")
    }
}
