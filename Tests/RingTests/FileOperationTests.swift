import Glibc
import SystemPackage
import Testing

@testable import Ring

/// Every file-system opcode against the real kernel, in a temporary directory.
@Suite(.timeLimit(.minutes(1))) struct FileOperationTests {
    @Test func openStatCloseRenameLinkUnlink() throws {
        var ring = try Ring(entries: 16)
        let dir = try TemporaryDirectory()
        let path = PinnedString(dir.child("a.txt"))
        let opened = try ring.run(.openat(path: path.pointer, flags: O_CREAT | O_RDWR, mode: 0o644))
        #expect(opened.result >= 0)
        let fd = FileDescriptor(rawValue: opened.result)
        try writeAll(fd, Array("hello ring".utf8))

        let statBuffer = PinnedBytes(count: 256)
        let stat = try ring.run(.statx(path: path.pointer, mask: 0xFFF, into: statBuffer.buffer.baseAddress!))
        #expect(stat.result == 0)
        // struct statx: stx_size is the u64 at byte 40.
        #expect(statBuffer.buffer.load(fromByteOffset: 40, as: UInt64.self) == 10)

        #expect(try ring.run(.close(fd)).result == 0)
        // A bad descriptor is an error in the completion. Not by closing `fd` again: tests run
        // in parallel in this process, and its number may already name another test's file. No
        // process can hold this one (descriptor tables end at fs.nr_open, at most 2^30).
        let neverOpen = FileDescriptor(rawValue: Int32.max - 1)
        #expect(try ring.run(.close(neverOpen)).result == -EBADF, "a bad descriptor fails in the completion")

        let how = Pinned(OpenHow(flags: O_RDONLY))
        let opened2 = try ring.run(.openat2(path: path.pointer, how: how.pointer))
        #expect(opened2.result >= 0)
        try? FileDescriptor(rawValue: opened2.result).close()

        let renamed = PinnedString(dir.child("b.txt"))
        #expect(try ring.run(.renameat(path.pointer, renamed.pointer)).result == 0)
        #expect(access(dir.child("b.txt"), F_OK) == 0 && access(dir.child("a.txt"), F_OK) != 0)

        let hard = PinnedString(dir.child("hard.txt"))
        #expect(try ring.run(.linkat(renamed.pointer, hard.pointer)).result == 0)
        let soft = PinnedString(dir.child("soft.txt"))
        #expect(try ring.run(.symlinkat(target: renamed.pointer, linkPath: soft.pointer)).result == 0)
        var linkTarget = [CChar](repeating: 0, count: 256)
        let n = readlink(dir.child("soft.txt"), &linkTarget, 255)
        #expect(
            n > 0
                && String(decoding: linkTarget.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    == dir.child("b.txt")
        )

        let sub = PinnedString(dir.child("sub"))
        #expect(try ring.run(.mkdirat(path: sub.pointer, mode: 0o755)).result == 0)
        #expect(try ring.run(.mkdirat(path: sub.pointer, mode: 0o755)).result == -EEXIST)
        #expect(try ring.run(.unlinkat(path: sub.pointer, flags: AT_REMOVEDIR)).result == 0)
        #expect(try ring.run(.unlinkat(path: hard.pointer)).result == 0)
        #expect(try ring.run(.unlinkat(path: hard.pointer)).result == -ENOENT)

        // Bad input: an over-long path and a path that does not exist fail in the completion.
        let long = PinnedString(String(repeating: "x", count: 5000))
        #expect(try ring.run(.openat(path: long.pointer, flags: O_RDONLY)).result == -ENAMETOOLONG)
        let missing = PinnedString(dir.child("missing/none"))
        #expect(try ring.run(.openat(path: missing.pointer, flags: O_RDONLY)).result == -ENOENT)
    }

    @Test func sizeAndSyncOperations() throws {
        var ring = try Ring(entries: 16)
        let file = try TemporaryFile()
        #expect(try ring.run(.fallocate(file.fd, offset: 0, length: 1 << 20)).result == 0)
        var st = stat()
        fstat(file.fd.rawValue, &st)
        #expect(st.st_size == 1 << 20)
        #expect(try ring.run(.syncFileRange(file.fd, offset: 0, length: 4096)).result == 0)
        #expect(try ring.run(.fadvise(file.fd, offset: 0, length: 4096, advice: POSIX_FADV_DONTNEED)).result == 0)
        let memory = PinnedBytes(count: 8192)
        #expect(try ring.run(.madvise(memory.buffer, advice: MADV_NORMAL)).result == 0)
        guard KernelOffers.opcode(.ftruncate, since: "6.9") else { return }
        #expect(try ring.run(.ftruncate(file.fd, length: 4096)).result == 0)
        fstat(file.fd.rawValue, &st)
        #expect(st.st_size == 4096)
    }

    @Test func spliceAndTee() throws {
        var ring = try Ring(entries: 16)
        let source = try TestPipe(), copy = try TestPipe()
        let file = try TemporaryFile()
        try writeAll(source.write, Array("splice me".utf8))
        // tee duplicates into `copy` without consuming `source`.
        #expect(try ring.run(.tee(from: source.read, to: copy.write, length: 9)).result == 9)
        #expect(try ring.run(.splice(from: source.read, offset: .max, to: file.fd, offset: 0, length: 9)).result == 9)
        #expect(try readSome(copy.read, 64) == Array("splice me".utf8))
        var back = [UInt8](repeating: 0, count: 9)
        _ = try back.withUnsafeMutableBytes { try file.fd.read(fromAbsoluteOffset: 0, into: $0) }
        #expect(back == Array("splice me".utf8))
    }

    @Test func extendedAttributes() throws {
        var ring = try Ring(entries: 16)
        let file = try TemporaryFile()
        let name = PinnedString("user.swift-ring")
        let value = PinnedBytes(Array("v1".utf8))
        let set = try ring.run(.fsetxattr(file.fd, name: name.pointer, value: value.readOnly))
        if set.result == -EOPNOTSUPP {
            skip(.xattr, "/tmp does not support user xattrs here")
            return
        }
        #expect(set.result == 0)
        let out = PinnedBytes(count: 16)
        #expect(try ring.run(.fgetxattr(file.fd, name: name.pointer, into: out.buffer)).result == 2)
        #expect(Array(out.bytes.prefix(2)) == Array("v1".utf8))
        let path = PinnedString(file.path)
        let value2 = PinnedBytes(Array("v22".utf8))
        #expect(try ring.run(.setxattr(path: path.pointer, name: name.pointer, value: value2.readOnly)).result == 0)
        #expect(try ring.run(.getxattr(path: path.pointer, name: name.pointer, into: out.buffer)).result == 3)
        #expect(Array(out.bytes.prefix(3)) == Array("v22".utf8))
    }

    @Test func pipeOpcode() throws {
        guard KernelOffers.opcode(.pipe, since: "6.16") else { return }
        var ring = try Ring(entries: 8)
        let fds = PinnedBytes(count: 8)
        let typed = fds.buffer.bindMemory(to: Int32.self).baseAddress!
        #expect(try ring.run(.pipe(typed, flags: O_CLOEXEC)).result == 0)
        let r = FileDescriptor(rawValue: typed[0]), w = FileDescriptor(rawValue: typed[1])
        defer { try? r.close(); try? w.close() }
        try writeAll(w, [1, 2, 3])
        #expect(try readSome(r, 8) == [1, 2, 3])
    }
}
