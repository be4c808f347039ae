import Glibc
import SystemPackage
import Testing

@testable import Ring

/// Bad input through the raw ring: each case fails with the kernel's errno in its completion and
/// the ring stays usable (checked after every case with a NOP).
@Suite(.timeLimit(.minutes(1))) struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var expected: [Int32]  // acceptable results (negative errnos)
        var testDescription: String { name }
    }

    /// Runs `entry`, checks its result is one of `expected`, then proves the ring still works.
    func expectFailure(_ ring: inout Ring, _ entry: SubmissionEntry, _ expected: [Int32], _ name: String) throws {
        let result = try ring.run(entry).result
        #expect(expected.contains(result), "\(name): got \(result), expected one of \(expected)")
        let nop = try ring.run(.nop(), userData: 0xAA)
        #expect(nop.result == 0, "\(name): ring unusable afterwards")
    }

    @Test func descriptorsOffsetsAndLengths() throws {
        var ring = try Ring(entries: 8)
        let buffer = PinnedBytes(count: 8192)
        let file = try TemporaryFile(size: 8192)
        try expectFailure(&ring, .read(FileDescriptor(rawValue: -1), into: buffer.buffer, offset: 0), [-EBADF], "fd -1")
        try expectFailure(
            &ring, .read(FileDescriptor(rawValue: 987_654), into: buffer.buffer, offset: 0), [-EBADF], "never-opened fd"
        )
        let closed = try FileDescriptor.open(file.path, .readOnly)
        try closed.close()
        try expectFailure(&ring, .read(closed, into: buffer.buffer, offset: 0), [-EBADF], "closed fd")
        let writeOnly = try FileDescriptor.open(file.path, .writeOnly)
        defer { try? writeOnly.close() }
        try expectFailure(&ring, .read(writeOnly, into: buffer.buffer, offset: 0), [-EBADF], "read on write-only fd")
        let readOnly = try FileDescriptor.open(file.path, .readOnly)
        defer { try? readOnly.close() }
        try expectFailure(&ring, .write(readOnly, from: buffer.readOnly, offset: 0), [-EBADF], "write on read-only fd")
        // Offsets: -2 is neither a position nor "current position".
        try expectFailure(
            &ring, .read(file.fd, into: buffer.buffer, offset: UInt64(bitPattern: -2)), [-EINVAL], "offset -2")
        // Zero length reads succeed with 0; a huge length is clamped by the kernel, not an error,
        // but pointing it at unmapped memory is EFAULT.
        let zero = UnsafeMutableRawBufferPointer(start: buffer.buffer.baseAddress, count: 0)
        let zeroResult = try ring.run(.read(file.fd, into: zero, offset: 0)).result
        #expect(zeroResult == 0)
        let wild = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: 0x1000), count: 1 << 30)
        try expectFailure(&ring, .read(file.fd, into: wild, offset: 0), [-EFAULT], "unmapped buffer")
        // A directory is not readable as a file.
        let dir = try FileDescriptor.open("/tmp", .readOnly)
        defer { try? dir.close() }
        try expectFailure(&ring, .read(dir, into: buffer.buffer, offset: 0), [-EISDIR], "read on a directory")
    }

    @Test func directIOAlignment() throws {
        var ring = try Ring(entries: 8)
        // tmpfs accepts any alignment for O_DIRECT, so use a disk-backed directory.
        let file = try TemporaryFile(directory: "/var/tmp")
        try writeAll(file.fd, pattern(count: 1 << 16, seed: 4))  // real blocks, not holes
        _ = fsync(file.fd.rawValue)
        let direct: FileDescriptor
        do {
            direct = try FileDescriptor.open(file.path, .readOnly, options: .direct)
        } catch {
            skip(.directIO, "/var/tmp does not support O_DIRECT here (\(error))")
            return
        }
        defer { try? direct.close() }
        let aligned = PinnedBytes(count: 8192, alignment: 4096)
        let good = try ring.run(
            .read(direct, into: UnsafeMutableRawBufferPointer(rebasing: aligned.buffer[0..<4096]), offset: 0))
        #expect(good.result == 4096)
        let misalignedBuffer = UnsafeMutableRawBufferPointer(rebasing: aligned.buffer[1..<4097])
        try expectFailure(
            &ring, .read(direct, into: misalignedBuffer, offset: 0), [-EINVAL], "misaligned O_DIRECT buffer")
        let alignedBuffer = UnsafeMutableRawBufferPointer(rebasing: aligned.buffer[0..<4096])
        try expectFailure(&ring, .read(direct, into: alignedBuffer, offset: 1), [-EINVAL], "misaligned O_DIRECT offset")
        let oddLength = UnsafeMutableRawBufferPointer(rebasing: aligned.buffer[0..<1000])
        try expectFailure(&ring, .read(direct, into: oddLength, offset: 0), [-EINVAL], "misaligned O_DIRECT length")
    }

    @Test func timeoutsCancelsAndFlags() throws {
        var ring = try Ring(entries: 8)
        let zero = Pinned(KernelTimespec(seconds: 0, nanoseconds: 0))
        let zeroResult = try ring.run(.timeout(zero.pointer)).result
        #expect(zeroResult == -ETIME, "a zero timeout fires at once")
        let negative = Pinned(KernelTimespec(seconds: -5, nanoseconds: 0))
        try expectFailure(&ring, .timeout(negative.pointer), [-EINVAL], "negative timeout")
        try expectFailure(
            &ring, .timeout(zero.pointer, flags: TimeoutFlags(rawValue: 1 << 20)), [-EINVAL], "unknown timeout flag")
        try expectFailure(&ring, .cancel(userData: 0xDEAD), [-ENOENT], "cancel of nothing")
        try expectFailure(
            &ring, .cancel(userData: 1, flags: CancelFlags(rawValue: 1 << 20)), [-EINVAL], "unknown cancel flag")
        try expectFailure(&ring, .nop().flags(SQEFlags(rawValue: 0x80)), [-EINVAL], "unknown SQE flag")
        try expectFailure(&ring, .nop().flags(.bufferSelect), [-EINVAL, -EOPNOTSUPP], "buffer select on NOP")
        var withPersonality = SubmissionEntry.nop()
        withPersonality.personality = 999
        try expectFailure(&ring, withPersonality, [-EINVAL], "unknown personality")
        try expectFailure(
            &ring,
            .read(FileDescriptor(rawValue: 3), into: UnsafeMutableRawBufferPointer(start: nil, count: 0), offset: 0)
                .flags(.fixedFile),
            [-EBADF], "fixed file without a table")
        try expectFailure(
            &ring,
            .readFixed(
                FileDescriptor(rawValue: 0), into: UnsafeMutableRawBufferPointer(start: nil, count: 0), offset: 0,
                bufferIndex: 0),
            [-EFAULT, -EBADF], "fixed buffer without a table")
        let path = PinnedString("")
        try expectFailure(&ring, .openat(path: path.pointer, flags: O_RDONLY), [-ENOENT], "empty path")
        try expectFailure(
            &ring, .pollAdd(FileDescriptor(rawValue: -5), events: .readable), [-EBADF], "poll on a bad fd")
        try expectFailure(&ring, .socket(domain: 9999, type: 1), [-EAFNOSUPPORT, -EINVAL], "unknown socket family")
    }
}
