import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// `sendFile`, `copy` and `readFile`: contents byte for byte, ends of files, errors, cancellation
/// and shutdown.
@Suite(.timeLimit(.minutes(1))) struct TransferTests {
    /// Sizes around the pipe's 64 KiB capacity, where a transfer takes more than one pair of splices.
    static let sizes = [0, 1, 4096, 65535, 65536, 65537, 300_001]

    /// A connected pair of local stream sockets.
    static func socketPair() throws -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw Errno(rawValue: errno) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// Receives from `socket` until the peer closes.
    static func receiveAll(_ socket: FileDescriptor, on executor: RingExecutor) async throws -> [UInt8] {
        var received: [UInt8] = []
        while true {
            let chunk = try await executor.receive(socket, upTo: 64 << 10)
            if chunk.isEmpty { return received }
            received += chunk
        }
    }

    @Test(arguments: sizes)
    func sendFileSendsTheRangeByteForByte(size: Int) async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: size + 100))
        defer { file.remove() }
        let (sender, receiver) = try Self.socketPair()
        defer { try? receiver.close() }
        try await executor.run {
            async let received = Self.receiveAll(receiver, on: executor)
            let sent = try await executor.sendFile(file.fd, offset: 100, count: size, to: sender)
            try sender.close()
            #expect(sent == size)
            let bytes = try await received
            #expect(bytes.count == size)
            #expect(sameBytes(bytes, pattern(count: size + 100), at: 100))
        }
    }

    @Test func sendFileStopsAtTheEndOfTheFile() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let size = 100_000
        let file = try TemporaryFile(contents: pattern(count: size))
        defer { file.remove() }
        let (sender, receiver) = try Self.socketPair()
        defer { try? receiver.close() }
        try await executor.run {
            async let received = Self.receiveAll(receiver, on: executor)
            let sent = try await executor.sendFile(file.fd, offset: 1000, count: 1 << 20, to: sender)
            try sender.close()
            #expect(sent == size - 1000)
            let bytes = try await received
            #expect(bytes.count == size - 1000)
            #expect(sameBytes(bytes, pattern(count: size), at: 1000))
        }
    }

    @Test(arguments: sizes)
    func copyCopiesTheRangeByteForByte(size: Int) async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let source = try TemporaryFile(contents: pattern(count: size))
        defer { source.remove() }
        let target = try TemporaryFile()
        defer { target.remove() }
        // Past the end too: a copy asked for more than the source holds stops at its end.
        let copied = try await executor.run {
            try await executor.copy(from: source.fd, count: size + 5000, to: target.fd, at: 10)
        }
        #expect(copied == size)
        var bytes = [UInt8](repeating: 0, count: size + 20)
        let read = try bytes.withUnsafeMutableBytes { try target.fd.read(fromAbsoluteOffset: 0, into: $0) }
        #expect(read == (size == 0 ? 0 : size + 10))
        if size > 0 {
            #expect(bytes.prefix(10).allSatisfy { $0 == 0 })
            #expect(sameBytes(Array(bytes[10..<size + 10]), pattern(count: size), at: 0))
        }
    }

    /// A transfer into a socket nobody reads blocks in the kernel once the socket's buffer and
    /// the pipe are full; cancelling it must end it, and only once the kernel has let go (the
    /// executor then has nothing in flight).
    @Test func aCancelledSendFileReturnsOnlyWhenTheKernelIsDone() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 8 << 20))
        defer { file.remove() }
        let (sender, receiver) = try Self.socketPair()
        defer {
            try? sender.close()
            try? receiver.close()
        }
        let transfer = Task(executorPreference: executor) {
            try await executor.sendFile(file.fd, count: 8 << 20, to: sender)
        }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        transfer.cancel()
        await #expect(throws: CancellationError.self) { try await transfer.value }
        #expect(await executor.run { executor.operationsInFlight } == 0)
    }

    @Test func afterShutdownEveryTransferThrowsESHUTDOWN() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        executor.shutdownGracefully()
        let file = try TemporaryFile(contents: pattern(count: 4096))
        defer { file.remove() }
        let (sender, receiver) = try Self.socketPair()
        defer {
            try? sender.close()
            try? receiver.close()
        }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            try await executor.sendFile(file.fd, count: 4096, to: sender)
        }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            try await executor.copy(from: file.fd, count: 4096, to: file.fd, at: 8192)
        }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            try await executor.readFile(at: FilePath(file.path), upTo: 1 << 20)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            try await executor.readFile(at: FilePath(file.path), into: buffer)
        }
    }

    @Test(arguments: [EngineKind.libaio, .posixAIO])
    func theAIOEnginesRefuseTransfersByName(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 4096))
        defer { file.remove() }
        await #expect(throws: EngineError.unsupported(operation: "sendFile", engine: engine)) {
            try await executor.sendFile(file.fd, count: 4096, to: file.fd)
        }
        await #expect(throws: EngineError.unsupported(operation: "copy", engine: engine)) {
            try await executor.copy(from: file.fd, count: 4096, to: file.fd, at: 8192)
        }
        await #expect(throws: EngineError.unsupported(operation: "readFile", engine: engine)) {
            try await executor.readFile(at: FilePath(file.path), upTo: 1 << 20)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        await #expect(throws: EngineError.unsupported(operation: "readFile", engine: engine)) {
            try await executor.readFile(at: FilePath(file.path), into: buffer)
        }
    }

    // MARK: readFile

    @Test(arguments: [0, 1, 4096, 65536, 300_001])
    func readFileReturnsTheWholeFile(size: Int) async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: size))
        defer { file.remove() }
        let bytes = try await executor.run { try await executor.readFile(at: FilePath(file.path), upTo: size) }
        #expect(bytes.count == size)
        #expect(sameBytes(bytes, pattern(count: size), at: 0))
    }

    /// Into the caller's memory: the whole file lands at the start of the buffer, what lies past
    /// it is untouched, and a buffer of exactly the file's size is enough.
    @Test(arguments: [0, 1, 4096, 300_001])
    func readFileIntoABufferFillsItsStart(size: Int) async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: size))
        defer { file.remove() }
        for spare in [0, 100] {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size + spare, alignment: 16)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
            let read = try await executor.readFile(at: FilePath(file.path), into: buffer)
            #expect(read == size)
            #expect(sameBytes(Array(buffer[..<size]), pattern(count: size), at: 0))
            #expect(buffer[size...].allSatisfy { $0 == 0xEE }, "bytes past the file were written")
        }
    }

    /// A file bigger than the buffer is `EFBIG`, through the chain and through separate
    /// operations (beside a file table of the caller's own), and the buffer's memory is not
    /// written past its end (a guard page would fault).
    @Test func readFileIntoASmallerBufferIsFileTooLarge() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 5000))
        defer { file.remove() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4999, alignment: 16)
        defer { buffer.deallocate() }
        let empty = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        await #expect(throws: Errno.fileTooLarge) { try await executor.readFile(at: FilePath(file.path), into: buffer) }
        await #expect(throws: Errno.fileTooLarge) { try await executor.readFile(at: FilePath(file.path), into: empty) }
        // A second executor with a table of the caller's own, registered before readFile could
        // register its own: readFile goes step by step there.
        guard let stepwise = try makeExecutor(.ioURing) else { return }
        defer { stepwise.shutdownGracefully() }
        try await stepwise.run {
            try stepwise.withRing { (ring: inout Ring) throws(Errno) in
                let fds: [Int32] = [file.fd.rawValue]
                try fds.withUnsafeBufferPointer { (table) throws(Errno) in try ring.registerFiles(table) }
            }
        }
        await #expect(throws: Errno.fileTooLarge) { try await stepwise.readFile(at: FilePath(file.path), into: buffer) }
    }

    @Test func readFileThrowsTypedErrors() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 5000))
        defer { file.remove() }
        try await executor.run { () async throws in
            await #expect(throws: Errno.noSuchFileOrDirectory) {
                try await executor.readFile(at: FilePath(file.path + ".missing"), upTo: 1 << 20)
            }
            await #expect(throws: Errno.fileTooLarge) {
                try await executor.readFile(at: FilePath(file.path), upTo: 4999)
            }
            await #expect(throws: Errno.isDirectory) {
                try await executor.readFile(at: "/tmp", upTo: 1 << 20)
            }
            await #expect(throws: Errno.invalidArgument) {
                try await executor.readFile(at: FilePath(file.path), upTo: -1)
            }
            // The failures gave their slots back: more reads than slots still succeed.
            for _ in 0..<100 {
                #expect(try await executor.readFile(at: FilePath(file.path), upTo: 5000).count == 5000)
            }
        }
    }

    /// More readers at once than the executor has fixed-file slots: the rest take separate
    /// operations, and every reader gets its own file.
    @Test func readFileUnderMoreConcurrentReadersThanSlots() async throws {
        guard let executor = try makeExecutor(.ioURing, entries: 256) else { return }
        defer { executor.shutdownGracefully() }
        let files = try (0..<20).map { try TemporaryFile(contents: pattern(count: 1000 + $0, from: $0)) }
        defer { files.forEach { $0.remove() } }
        let matches = try await executor.run {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<200 {
                    let file = files[index % files.count]
                    group.addTask {
                        let bytes = try await executor.readFile(at: FilePath(file.path), upTo: 1 << 16)
                        return bytes == pattern(count: 1000 + index % files.count, from: index % files.count)
                    }
                }
                var all: [Bool] = []
                for try await match in group { all.append(match) }
                return all
            }
        }
        #expect(matches.count == 200 && matches.allSatisfy { $0 })
    }

    /// With a file table of the caller's own (registered through `withRing`), `readFile` leaves
    /// it alone and reads in separate operations.
    @Test func readFileBesideTheCallersOwnFileTable() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 7000))
        defer { file.remove() }
        let bytes = try await executor.run {
            try executor.withRing { (ring: inout Ring) throws(Errno) in
                // A table of one real descriptor: sparse tables need Linux 5.19, this works on
                // every kernel the executor runs on (CI runs this suite as 5.10 too).
                let fds: [Int32] = [file.fd.rawValue]
                try fds.withUnsafeBufferPointer { (table) throws(Errno) in try ring.registerFiles(table) }
            }
            return try await executor.readFile(at: FilePath(file.path), upTo: 7000)
        }
        #expect(bytes == pattern(count: 7000))
    }
}

/// A linked chain reaches the kernel in one submit call: the engine's early hand-over of a full
/// batch (`submitBatch`) split chains, and the kernel ends a chain at the end of a submit call, so
/// the rest ran unlinked (readFile's read ran before its open: EBADF under ring-http's load).
@Suite(.timeLimit(.minutes(1))) struct ChainBatchTests {
    @Test func aChainIsNotSplitByTheSubmitBatch() async throws {
        guard let executor = try makeExecutor(.ioURing, submitBatch: 1) else { return }
        defer { executor.shutdownGracefully() }
        // The failing close cancels the linked nop, unless the nop was submitted on its own.
        let results = try await executor.run {
            try await executor.submitChain([.close(FileDescriptor(rawValue: -1)).flags(.link), .nop()])
        }
        #expect(results == [-EBADF, -ECANCELED])
    }
}
