import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// Bad input through the async API: each case must end in the stated typed error (or result),
/// and the executor must keep working afterwards.
@Suite(.timeLimit(.minutes(3))) struct ExecutorBadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        /// The errno expected, or nil when the call must succeed (the check is in `body`).
        let expected: Errno?
        /// The operation, when older kernels lack it: there the call must throw
        /// `EngineError.kernelLacks` naming it instead.
        var needs: Opcode? = nil
        let body: @Sendable (RingExecutor, Fixture) async throws -> Void
        var testDescription: String { name }
    }

    /// Files and descriptors the cases use.
    struct Fixture: Sendable {
        let file: TemporaryFile
        let directFile: TemporaryFile
        let readOnly: FileDescriptor
        let writeOnly: FileDescriptor
        let directory: FileDescriptor
        let closed: FileDescriptor
        let pipe: PipePair
    }

    static let cases: [Case] = [
        Case(name: "read from fd -1", expected: .badFileDescriptor) { e, _ in
            _ = try await e.read(FileDescriptor(rawValue: -1), upTo: 8, offset: 0)
        },
        Case(name: "read from a closed fd", expected: .badFileDescriptor) { e, f in
            _ = try await e.read(f.closed, upTo: 8, offset: 0)
        },
        Case(name: "write to a read-only fd", expected: .badFileDescriptor) { e, f in
            _ = try await e.write(f.readOnly, bytes: [1], offset: 0)
        },
        Case(name: "read from a write-only fd", expected: .badFileDescriptor) { e, f in
            _ = try await e.read(f.writeOnly, upTo: 8, offset: 0)
        },
        Case(name: "negative offset", expected: .invalidArgument) { e, f in
            _ = try await e.read(f.file.fd, upTo: 8, offset: UInt64(bitPattern: -2))
        },
        Case(name: "negative length", expected: .invalidArgument) { e, f in
            _ = try await e.read(f.file.fd, upTo: -1, offset: 0)
        },
        Case(name: "zero-length read returns 0", expected: nil) { e, f in
            let n = try await e.read(f.file.fd, into: UnsafeMutableRawBufferPointer(start: nil, count: 0), offset: 0)
            #expect(n == 0)
        },
        Case(name: "huge length past end of file is a short read", expected: nil) { e, f in
            let bytes = try await e.read(f.file.fd, upTo: 64 << 20, offset: 0)
            #expect(bytes.count == 8192)
        },
        Case(name: "misaligned O_DIRECT buffer", expected: .invalidArgument) { e, f in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 + 1, alignment: 4096)
            defer { buffer.deallocate() }
            _ = try await e.read(
                f.directFile.fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[1...]), offset: 0)
        },
        Case(name: "misaligned O_DIRECT offset", expected: .invalidArgument) { e, f in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
            defer { buffer.deallocate() }
            _ = try await e.read(f.directFile.fd, into: buffer, offset: 100)
        },
        Case(name: "read on a directory", expected: .isDirectory) { e, f in
            _ = try await e.read(f.directory, upTo: 8, offset: 0)
        },
        Case(name: "path too long", expected: .fileNameTooLong) { e, _ in
            _ = try await e.open(FilePath(String(repeating: "a", count: 5000)), .readOnly)
        },
        Case(name: "path component too long", expected: .fileNameTooLong) { e, _ in
            _ = try await e.open(FilePath("/tmp/" + String(repeating: "b", count: 300)), .readOnly)
        },
        Case(name: "open a missing file", expected: .noSuchFileOrDirectory) { e, _ in
            _ = try await e.open("/nonexistent/ring", .readOnly)
        },
        Case(name: "create where the file system refuses it", expected: nil) { e, _ in
            // sysfs has no create operation: EACCES (root too); where /sys is mounted read-only,
            // as in many containers, EROFS. A missing parent (ENOENT) would not test this.
            do {
                let fd = try await e.open("/sys/swift-ring-create-test", .writeOnly, options: .create)
                try? fd.close()
                Issue.record("creating a file in /sys succeeded")
            } catch let error as Errno {
                #expect(error == .permissionDenied || error == .readOnlyFileSystem, "got \(error)")
            }
        },
        Case(name: "mkdir an existing directory", expected: .fileExists, needs: .mkdirat) { e, _ in
            try await e.makeDirectory("/tmp")
        },
        Case(name: "unlink a missing file", expected: .noSuchFileOrDirectory, needs: .unlinkat) { e, _ in
            try await e.remove(FilePath("/tmp/ring-missing-\(getpid())"))
        },
        Case(name: "rename a missing file", expected: .noSuchFileOrDirectory, needs: .renameat) { e, _ in
            try await e.rename(
                FilePath("/tmp/ring-missing-\(getpid())"), to: FilePath("/tmp/ring-missing-2-\(getpid())"))
        },
        Case(name: "statx a missing file", expected: .noSuchFileOrDirectory) { e, _ in
            _ = try await e.status(of: "/nonexistent/ring")
        },
        Case(name: "fallocate on a pipe", expected: .illegalSeek) { e, f in
            try await e.fallocate(f.pipe.write, offset: 0, length: 4096)
        },
        Case(name: "truncate a read-only fd", expected: .invalidArgument, needs: .ftruncate) { e, f in
            try await e.truncate(f.readOnly, length: 0)
        },
        Case(name: "splice between two files", expected: .invalidArgument) { e, f in
            _ = try await e.splice(from: f.file.fd, offset: 0, to: f.directFile.fd, offset: 0, length: 4096)
        },
        Case(name: "fsync on a bad fd", expected: .badFileDescriptor) { e, _ in
            try await e.fsync(FileDescriptor(rawValue: 9999))
        },
        Case(name: "poll on a bad fd", expected: .badFileDescriptor) { e, _ in
            _ = try await e.poll(FileDescriptor(rawValue: 9999), for: .readable)
        },
        Case(name: "listen on a regular file", expected: .notSocket) { e, f in try await e.listen(f.file.fd) },
        Case(name: "accept on a socket that does not listen", expected: .invalidArgument) { e, _ in
            let socket = try await e.socket()
            defer { try? socket.close() }
            _ = try await e.accept(socket)
        },
        Case(name: "send on an unconnected TCP socket", expected: .brokenPipe) { e, _ in
            let socket = try await e.socket()
            defer { try? socket.close() }
            try await e.send(socket, bytes: [1, 2, 3])
        },
        Case(name: "connect to a missing Unix socket", expected: .noSuchFileOrDirectory) { e, _ in
            let socket = try await e.socket(domain: AF_UNIX, type: Int32(SOCK_STREAM.rawValue))
            defer { try? socket.close() }
            try await e.connect(socket, to: SocketAddress(unixPath: "/tmp/ring-no-such-socket-\(getpid())"))
        },
        Case(name: "write to a pipe whose reader is gone", expected: .brokenPipe) { e, _ in
            let pipe = try PipePair()
            try pipe.read.close()
            defer { try? pipe.write.close() }
            _ = try await e.write(pipe.write, bytes: [1], offset: nil)
        },
        Case(name: "unknown raw opcode", expected: .invalidArgument) { e, _ in
            var entry = SubmissionEntry()
            entry.opcode = 250
            let result = await e.submit(entry)
            if result < 0 { throw Errno(rawValue: -result) }
        },
        Case(name: "invalid register arguments", expected: .badAddress) { e, _ in
            try await e.run {
                // IORING_REGISTER_BUFFERS from a null array.
                _ = try e.withRing { ring throws(Errno) in try ring.register(.registerBuffers, argument: nil, count: 0)
                }
            }
        },
        Case(name: "chain longer than 16 entries", expected: .invalidArgument) { e, _ in
            _ = try await e.submitChain(Array(repeating: .nop().flags(.link), count: 17))
        },
        Case(name: "chain longer than the submission queue", expected: .invalidArgument) { e, _ in
            // The fixture's executor has 16 SQ entries (one is kept for its wake-up).
            _ = try await e.submitChain(Array(repeating: .nop().flags(.link), count: 15) + [.nop()])
            _ = try await e.submitChain(Array(repeating: .nop().flags(.link), count: 16))
        },
        Case(name: "double close", expected: .badFileDescriptor) { e, _ in
            // A high number, so tests running in parallel are not handed it between the closes,
            // yet below the descriptor limit, so that dup2 itself cannot fail with the EBADF
            // this case expects from the executor.
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            let number = Int32(min(9002, Int(limit.rlim_cur) - 1))
            let opened = try FileDescriptor.open("/dev/null", .readOnly)
            defer { try? opened.close() }
            let fd: FileDescriptor
            do {
                fd = try opened.duplicate(as: FileDescriptor(rawValue: number))
            } catch {
                Issue.record("dup2 to \(number) failed (\(error)): the case did not reach the executor")
                return
            }
            // The first close must succeed, so the EBADF below comes from the second.
            do {
                try await e.close(fd)
            } catch {
                Issue.record("the first close failed: \(error)")
                return
            }
            try await e.close(fd)
        },
        Case(name: "cancelling twice resumes once", expected: nil) { e, f in
            let task = Task { try await e.read(f.pipe.read, upTo: 8) }
            #expect(await waitForOperationsInFlight(e, atLeast: 1), "the read is in flight before it is cancelled")
            task.cancel()
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
        },
        Case(name: "zero and negative timeouts", expected: nil) { e, _ in
            try await e.sleep(for: .zero)
            try await e.sleep(for: .seconds(-5))
            try await e.withTimeout(.zero) { try await e.nop() }  // a NOP may still win the race
        },
        Case(name: "timeout of zero on a blocked read", expected: .timedOut) { e, f in
            try await e.withTimeout(.zero) { _ = try await e.read(f.pipe.read, upTo: 8) }
        },
    ]

    @Test(arguments: cases)
    func badInputGivesTypedErrorsAndLeavesTheExecutorUsable(_ testCase: Case) async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 8192))
        defer { file.remove() }
        let directFile = try TemporaryFile(contents: pattern(count: 8192))
        defer { directFile.remove() }
        let direct = try FileDescriptor.open(FilePath(directFile.path), .readWrite, options: .direct)
        let readOnly = try FileDescriptor.open(FilePath(file.path), .readOnly)
        let writeOnly = try FileDescriptor.open(FilePath(file.path), .writeOnly)
        let directory = try FileDescriptor.open("/tmp", .readOnly, options: .directory)
        // Never opened, and too high to be handed to a test running in parallel.
        let closed = FileDescriptor(rawValue: 9001)
        let pipe = try PipePair()
        defer {
            for fd in [direct, readOnly, writeOnly, directory] { try? fd.close() }
            pipe.close()
        }
        let fixture = Fixture(
            file: file, directFile: TemporaryFile(path: directFile.path, fd: direct), readOnly: readOnly,
            writeOnly: writeOnly,
            directory: directory, closed: closed, pipe: pipe)
        if let op = testCase.needs, let lacks = executor.errorForLacking(op) {
            await #expect(throws: lacks) { try await testCase.body(executor, fixture) }
        } else if let expected = testCase.expected {
            await #expect(throws: expected) { try await testCase.body(executor, fixture) }
        } else {
            try await testCase.body(executor, fixture)
        }
        try await executor.nop()  // still usable
        #expect(try await executor.read(readOnly, upTo: 16, offset: 0) == pattern(count: 16))
    }
}
