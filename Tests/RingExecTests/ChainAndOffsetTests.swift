import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// Explicit offsets and the file position (issue 13, item 19).
@Suite(.timeLimit(.minutes(1))) struct OffsetTests {
    /// Under the old code `offset: UInt64.max` was io_uring's -1: the write went to the file
    /// position (here 0) and returned 3 instead of failing.
    @Test(arguments: EngineKind.allCases)
    func offsetsAboveInt64MaxAreRefused(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile()
        defer { file.remove() }
        for offset in [UInt64.max, UInt64(Int64.max) + 1] {
            await #expect(throws: Errno.invalidArgument) {
                _ = try await executor.write(file.fd, bytes: [1, 2, 3], offset: offset)
            }
            await #expect(throws: Errno.invalidArgument) {
                _ = try await executor.read(file.fd, upTo: 3, offset: offset)
            }
        }
        #expect(try file.fd.seek(offset: 0, from: .end) == 0)  // nothing was written anywhere
        // The largest valid offset is accepted (and reads nothing).
        #expect(try await executor.read(file.fd, upTo: 3, offset: UInt64(Int64.max) - 8).isEmpty)
    }

    /// `offset: nil` means the file position on io_uring; the aio engines cannot do that and say
    /// so the same way. Under the old code libaio handed -1 to the kernel (EINVAL) while POSIX
    /// aio threw `unsupported("read")`.
    @Test(arguments: EngineKind.allCases)
    func theFilePositionIsIOURingOnly(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: [9, 8, 7])
        defer { file.remove() }
        if engine == .ioURing {
            #expect(try await executor.read(file.fd, upTo: 2, offset: nil) == [9, 8])
            #expect(try await executor.read(file.fd, upTo: 2, offset: nil) == [7])
            return
        }
        await #expect(throws: EngineError.unsupported(operation: "read at the file position", engine: engine)) {
            _ = try await executor.read(file.fd, upTo: 2, offset: nil)
        }
        await #expect(throws: EngineError.unsupported(operation: "write at the file position", engine: engine)) {
            _ = try await executor.write(file.fd, bytes: [1], offset: nil)
        }
        #expect(try await executor.read(file.fd, upTo: 3, offset: 0) == [9, 8, 7])
    }
}

/// A cancelled chain still reports what ran (issue 13, item 21).
@Suite(.timeLimit(.minutes(1))) struct ChainCancellationTests {
    /// Under the old code the cancelled chain threw CancellationError and the descriptor the
    /// open had returned was lost (leaked).
    @Test func cancelledChainReturnsTheDescriptorItsOpenReturned() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: [5])
        defer { file.remove() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let path = strdup(file.path)!
        defer { free(path) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
        defer { buffer.deallocate() }
        let before = Set(openDescriptors(to: file.path))
        let entries: [SubmissionEntry] = [
            .openat(directory: FileDescriptor(rawValue: AT_FDCWD), path: path, flags: O_RDONLY | O_CLOEXEC, mode: 0)
                .flags(.link),
            .read(pipe.read, into: buffer, offset: SubmissionEntry.currentPosition),  // waits: nothing is written
        ]
        let chain = Task { try await executor.submitChain(entries) }
        // The open has run once a new descriptor to the file exists.
        try await pollUntil { !Set(openDescriptors(to: file.path)).subtracting(before).isEmpty }
        chain.cancel()
        let results = try await chain.value
        #expect(results.count == 2)
        // ECANCELED; EINTR where a kernel worker was already blocked in the read (Linux 6.1).
        #expect(results[1] == -ECANCELED || results[1] == -EINTR)
        let fd = FileDescriptor(rawValue: results[0])
        #expect(Set(openDescriptors(to: file.path)).subtracting(before) == [results[0]])
        try fd.close()
    }

    /// Cancelled before anything ran: nothing to report, CancellationError as before.
    @Test func chainCancelledBeforeSubmissionThrowsCancellation() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let chain = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await executor.submitChain([.nop().flags(.link), .nop()])
        }
        await #expect(throws: CancellationError.self) { _ = try await chain.value }
    }
}

/// Descriptors of this process open on `path` (from /proc/self/fd).
func openDescriptors(to path: String) -> [Int32] {
    guard let directory = opendir("/proc/self/fd") else { return [] }
    defer { closedir(directory) }
    var found: [Int32] = []
    var target = [CChar](repeating: 0, count: Int(PATH_MAX))
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) {
            String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
        }
        guard let fd = Int32(name) else { continue }
        let length = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        guard length > 0 else { continue }
        if String(decoding: target[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) == path { found.append(fd) }
    }
    return found
}
