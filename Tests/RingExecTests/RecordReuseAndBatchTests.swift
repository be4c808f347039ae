import Glibc
import Ring
import Synchronization
import SystemPackage
import Testing

@testable import RingExec

/// Operation records are reused on the loop thread (no allocation per awaited operation), and a
/// reused record answers to a new token, so nothing meant for an earlier use reaches it.
@Suite(.timeLimit(.minutes(1))) struct RecordReuseTests {
    @Test func aReusedRecordAnswersToANewTokenAtTheSameAddress() {
        let record = Operation(.nop())
        let first = record.token
        record.reuse(.nop())
        let second = record.token
        #expect(first != second, "a cancel asked for the first use would reach the second")
        #expect(Operation.from(token: second).0.toOpaque() == Unmanaged.passUnretained(record).toOpaque())
        #expect(Operation.from(token: second + 3).1 == 3, "the chain position survives the generation bits")
    }

    @Test func awaitedOperationsOnTheLoopThreadReuseTheirRecords() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        try await executor.run {
            for _ in 0..<1000 { try await executor.nop() }
        }
        // One record serves every sequential NOP; a few more at most for the first ones.
        #expect(executor.recordsCreatedSoFar <= 2, "\(executor.recordsCreatedSoFar) records for 1000 NOPs")
    }

    /// An engine that records the tokens it is handed and completes everything at once.
    final class RecordingEngine: IOEngine, @unchecked Sendable {
        private var ready: [(UInt64, Int32, UInt32)] = []
        private let tokenLock = Mutex<[UInt64]>([])
        var tokens: [UInt64] { tokenLock.withLock { $0 } }
        var kind: EngineKind { .ioURing }
        var systemCalls: Int { 0 }
        var submitBatch: Int { .max }
        var submissionCapacity: Int { 64 }
        var submissionSpace: Int { 64 }
        func supports(_ entry: SubmissionEntry) -> Bool { true }
        func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
            tokenLock.withLock { $0.append(token) }
            ready.append((token, 0, 0))
            return true
        }
        func cancel(token: UInt64) -> Bool { true }
        func cancelAll() {}
        func submit(wait: Bool, timeout: Duration?) { if wait && ready.isEmpty { usleep(100) } }
        func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
            let batch = ready
            ready.removeAll()
            for (token, result, flags) in batch { body(token, result, flags) }
        }
        func wake() {}
        func close() {}
    }

    @Test func successiveOperationsOnOneRecordCarryDifferentTokens() async throws {
        let engine = RecordingEngine()
        let executor = try RingExecutor { () throws(EngineError) in
            (engine, EngineSelection(engine: .ioURing, passedOver: [], fromEnvironment: false))
        }
        defer { executor.shutdownGracefully(deadline: .seconds(5)) }
        await executor.run {
            for _ in 0..<3 { _ = await executor.submit(.nop()) }
        }
        let tokens = engine.tokens
        #expect(tokens.count == 3)
        #expect(Set(tokens).count == 3, "a token was handed to the engine twice: \(tokens)")
        let addresses = Set(tokens.map(Operation.address(inToken:)))
        #expect(addresses.count == 1, "the record was not reused")
    }
}

/// `perform(_:)`: many reads and writes, one await, every result; the cancellation rule holds
/// for the whole batch.
@Suite(.timeLimit(.minutes(2))) struct BatchTests {
    @Test(arguments: EngineKind.allCases)
    func aBatchReadsEveryRangeAndReportsEachResult(engine: EngineKind) async throws {
        // 8 SQ entries: a batch of 100 must wait for room instead of failing.
        guard let executor = try makeExecutor(engine, entries: 8) else { return }
        defer { executor.shutdownGracefully() }
        let size = 100 * 4096
        let file = try TemporaryFile(contents: pattern(count: size))
        defer { file.remove() }
        let buffers = (0..<102).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16) }
        defer { for buffer in buffers { buffer.deallocate() } }
        var requests = (0..<100).map {
            IORequest.read(file.fd, into: buffers[$0], offset: UInt64(($0 * 37 % 100) * 4096))
        }
        requests.append(.read(file.fd, into: buffers[100], offset: UInt64(size)))  // at the end: 0 bytes
        requests.append(.read(FileDescriptor(rawValue: 987_654), into: buffers[101], offset: 0))  // not open
        let batch = requests
        let results = try await executor.run { try await executor.perform(batch) }
        #expect(results.count == 102)
        for index in 0..<100 {
            #expect((try? results[index].get()) == 4096, "request \(index): \(results[index])")
            let start = (index * 37 % 100) * 4096
            #expect(Array(buffers[index]) == pattern(count: 4096, from: start), "request \(index)'s bytes")
        }
        #expect((try? results[100].get()) == 0)
        #expect(throws: Errno.badFileDescriptor) { try results[101].get() }
    }

    @Test func writesAndReadsOfDisjointRangesShareABatch() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 8192))
        defer { file.remove() }
        let source = pattern(count: 4096, from: 1_000_000)
        let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { readBuffer.deallocate() }
        let written = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { written.deallocate() }
        written.copyBytes(from: source)
        let results = try await executor.perform([
            .write(file.fd, from: UnsafeRawBufferPointer(written), offset: 8192),
            .read(file.fd, into: readBuffer, offset: 4096),
        ])
        #expect(results.map { try? $0.get() } == [4096, 4096])
        #expect(Array(readBuffer) == pattern(count: 4096, from: 4096))
        #expect(try await executor.read(file.fd, upTo: 4096, offset: 8192) == source)
    }

    @Test func aBatchAwaitedOffTheLoopThreadWorksToo() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 4096 * 4))
        defer { file.remove() }
        let buffers = (0..<4).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16) }
        defer { for buffer in buffers { buffer.deallocate() } }
        // This test's task does not prefer the executor: records are created, not pooled.
        let results = try await executor.perform(
            (0..<4).map { .read(file.fd, into: buffers[$0], offset: UInt64($0 * 4096)) })
        #expect(results.map { try? $0.get() } == [4096, 4096, 4096, 4096])
        for index in 0..<4 { #expect(Array(buffers[index]) == pattern(count: 4096, from: index * 4096)) }
    }

    @Test func anEmptyBatchReturnsAtOnceAndBadInputSubmitsNothing() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try await executor.perform([]).isEmpty)
        await #expect(throws: Errno.invalidArgument) {
            try await executor.perform([.read(FileDescriptor(rawValue: 0), into: buffer, offset: UInt64.max)])
        }
        let request = IORequest.read(FileDescriptor(rawValue: 0), into: buffer, offset: 0)
        let cancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await executor.perform([request])
        }
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(executor.operationsInFlight == 0)
        executor.shutdownGracefully()
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            try await executor.perform([request])
        }
    }

    @Test func aCancelledBatchReturnsOnlyWhenTheEngineHasLetGoOfEveryBuffer() async throws {
        let engine = CancellationHoldTests.HoldingEngine()
        let executor = try RingExecutor { () throws(EngineError) in
            (engine, EngineSelection(engine: .ioURing, passedOver: [], fromEnvironment: false))
        }
        defer { executor.shutdownGracefully(deadline: .seconds(5)) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
        defer { buffer.deallocate() }
        let resumed = Atomic<Bool>(false)
        let requests = (0..<3).map { IORequest.read(FileDescriptor(rawValue: 0), into: buffer, offset: UInt64($0)) }
        let task = Task {
            defer { resumed.store(true, ordering: .releasing) }
            return try await executor.perform(requests)
        }
        #expect(await waitUntil { engine.heldCount.load(ordering: .acquiring) == 3 }, "the batch reached the engine")
        task.cancel()
        #expect(
            await waitUntil { engine.cancelRequests.load(ordering: .acquiring) == 3 },
            "every request was asked to cancel")
        for _ in 0..<50 { _ = await executor.run { 0 } }
        let resumedEarly = resumed.load(ordering: .acquiring)
        #expect(!resumedEarly, "the batch returned while the engine still held its buffers")
        engine.release()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
