import Glibc
import Ring
import Synchronization
import SystemPackage
import Testing

@testable import RingExec

/// Attacks on the pooled records, the batch API and the timeout scope counter: cancels that race
/// a finished operation whose record is already serving the next one, batches larger than the
/// submission queue, cancelled at every stage, and batches inside `withTimeout`.
@Suite(.timeLimit(.minutes(1))) struct HotPathAttackTests {
    /// A cancel that lands just after an operation finished must not reach the operation that
    /// reuses its record (the task's next one): that one completes normally.
    @Test func lateCancelsNeverReachTheNextUseOfARecord() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        for _ in 0..<500 {
            let task = Task(executorPreference: executor) {
                try await executor.nop()
                // The cancel below races this: whatever it hits, the loop keeps its records apart.
                do { try await executor.nop() } catch is CancellationError {}
                try? await executor.nop()
            }
            task.cancel()
            _ = await task.result
        }
        #expect(executor.operationsInFlight == 0)
        // And the pool still serves plain operations afterwards.
        try await executor.run { for _ in 0..<100 { try await executor.nop() } }
    }

    /// Cancelled while a pipe read is in flight, then the same task reuses the record at once.
    @Test func aRecordCancelledInFlightServesTheNextOperation() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        try await executor.run {
            for _ in 0..<200 {
                let reader = Task(executorPreference: executor) {
                    try await executor.read(pipe.read, upTo: 1, offset: nil)
                }
                try await executor.nop()  // the read is in flight by now, or queued
                reader.cancel()
                await #expect(throws: CancellationError.self) { try await reader.value }
                try await executor.nop()
            }
        }
        #expect(executor.operationsInFlight == 0)
    }

    /// More requests than the submission queue holds, half of them zero-length, two of them
    /// blocked on a pipe; cancelled once the rest are done: the call returns, the blocked ones
    /// end with `ECANCELED`, every finished slot keeps its result.
    @Test func aBatchLargerThanTheQueueKeepsFinishedResultsWhenCancelled() async throws {
        guard let executor = try makeExecutor(.ioURing, entries: 2) else { return }
        defer { executor.shutdownGracefully() }
        let fixture = try PipeAndPage()
        defer { fixture.remove() }
        let (pipe, file, buffer) = (fixture.pipe, fixture.file, fixture.buffer)
        let empty = UnsafeMutableRawBufferPointer(start: buffer.baseAddress, count: 0)
        var requests = [IORequest.read(pipe.read, into: buffer, offset: 0), .read(pipe.read, into: buffer, offset: 0)]
        for index in 0..<62 { requests.append(.read(file.fd, into: index % 2 == 0 ? empty : buffer, offset: 0)) }
        let batch = requests
        let task = Task(executorPreference: executor) { try await executor.perform(batch) }
        #expect(await waitUntil { executor.operationsInFlight == 2 }, "only the pipe reads are left")
        task.cancel()
        let results = try await task.value
        #expect(results.prefix(2).map { try? $0.get() } == [nil, nil])
        let counts = results.dropFirst(2).map { try? $0.get() }
        #expect(counts == (0..<62).map { $0 % 2 == 0 ? 0 : 4096 })
        #expect(executor.operationsInFlight == 0)
    }

    /// Many tasks, on and off the loop thread and from an actor pinned to the ring, each running
    /// batches at once.
    @Test func concurrentBatchesFromEverywhere() async throws {
        guard let executor = try makeExecutor(.ioURing, entries: 8) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 4096 * 8))
        defer { file.remove() }
        let pinned = PinnedReader(executor: executor)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for member in 0..<12 {
                let body: @Sendable () async throws -> Void = {
                    let buffers = (0..<8).map { _ in
                        UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
                    }
                    defer { for buffer in buffers { buffer.deallocate() } }
                    for _ in 0..<20 {
                        let results = try await executor.perform(
                            (0..<8).map { .read(file.fd, into: buffers[$0], offset: UInt64($0 * 4096)) })
                        #expect(results.map { try? $0.get() } == Array(repeating: 4096, count: 8))
                    }
                }
                switch member % 3 {
                case 0: group.addTask(executorPreference: executor) { try await body() }
                case 1: group.addTask { try await body() }
                default: group.addTask { try await pinned.readAll(file.fd) }
                }
            }
            try await group.waitForAll()
        }
        #expect(executor.operationsInFlight == 0)
    }

    /// Runs batches isolated to an actor whose executor is the ring.
    actor PinnedReader {
        let executor: RingExecutor
        init(executor: RingExecutor) { self.executor = executor }
        nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
        func readAll(_ fd: FileDescriptor) async throws {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 * 8, alignment: 16)
            defer { buffer.deallocate() }
            for _ in 0..<20 {
                let requests = pageReads(fd, buffer, count: 8)
                let results = try await executor.perform(requests)
                #expect(results.map { try? $0.get() } == Array(repeating: 4096, count: 8))
            }
        }
    }

    /// Batches on the other engines, cancelled in flight and run to completion.
    @Test(arguments: [EngineKind.libaio, .posixAIO])
    func batchesOnTheOtherEngines(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine, entries: 4) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 4096 * 16))
        defer { file.remove() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 * 16, alignment: 4096)
        defer { buffer.deallocate() }
        let requests = pageReads(file.fd, buffer, count: 16)
        for round in 0..<50 {
            let task = Task(executorPreference: executor) { try await executor.perform(requests) }
            if round % 2 == 1 { task.cancel() }
            do {
                let results = try await task.value
                let counts = results.map { result -> Int in
                    switch result {
                    case .success(let count): return count
                    case .failure(let error): return error == .canceled ? 4096 : -1
                    }
                }
                #expect(counts == Array(repeating: 4096, count: 16))
            } catch is CancellationError {}
        }
        #expect(await waitUntil { executor.operationsInFlight == 0 })
    }

    /// A batch inside `withTimeout` ends at the deadline like every other operation does.
    @Test func withTimeoutBoundsABatch() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let fixture = try PipeAndPage()
        defer { fixture.remove() }
        let (pipe, file, buffer) = (fixture.pipe, fixture.file, fixture.buffer)
        // Every request blocks: the batch as a whole times out.
        await #expect(throws: Errno.timedOut) {
            try await executor.withTimeout(.milliseconds(50)) {
                try await executor.perform([.read(pipe.read, into: buffer, offset: 0)])
            }
        }
        // One finishes, one blocks: the finished one keeps its result, the other timed out.
        let results = try await executor.withTimeout(.milliseconds(50)) {
            try await executor.perform([
                .read(file.fd, into: buffer, offset: 0), .read(pipe.read, into: buffer, offset: 0),
            ])
        }
        #expect(try results[0].get() == 4096)
        #expect(throws: Errno.timedOut) { try results[1].get() }
        #expect(executor.operationsInFlight == 0)
    }

    /// An unstructured task started inside a scope, running on after the scope closed, while
    /// another scope is open elsewhere: the counter says "some scope is open", the task's own
    /// copy is closed, so its operation is not bounded.
    @Test func aClosedScopeSeenThroughAnOpenCounterDoesNotBound() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let gate = Gate()
        let escaped = try await executor.withTimeout(.milliseconds(20)) {
            Task(executorPreference: executor) { () async throws -> Void in
                while !gate.open.load(ordering: .acquiring) { try await executor.nop() }
                try await executor.sleep(for: .milliseconds(60))  // past the closed scope's deadline
            }
        }
        try await executor.withTimeout(.seconds(30)) {
            gate.open.store(true, ordering: .releasing)
            try await escaped.value
        }
    }
}

/// Reads of `count` consecutive 4 KiB pages of `fd` into consecutive pages of `buffer`.
private func pageReads(_ fd: FileDescriptor, _ buffer: UnsafeMutableRawBufferPointer, count: Int) -> [IORequest] {
    (0..<count).map { (page: Int) -> IORequest in
        let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[page * 4096..<(page + 1) * 4096])
        return IORequest.read(fd, into: slice, offset: UInt64(page * 4096))
    }
}

private final class Gate: Sendable {
    let open = Atomic<Bool>(false)
}

/// An empty pipe (its reads block), a file of one 4 KiB page, and a page-sized buffer.
private struct PipeAndPage {
    let pipe: PipePair
    let file: TemporaryFile
    let buffer: UnsafeMutableRawBufferPointer
    init() throws {
        pipe = try PipePair()
        file = try TemporaryFile(contents: pattern(count: 4096))
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    }
    func remove() {
        pipe.close()
        file.remove()
        buffer.deallocate()
    }
}
