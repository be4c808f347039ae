import Glibc
import SystemPackage
import Testing

@testable import Ring

/// Every one of the 63 opcodes has an encoder, and each encoder sets its opcode and only the
/// fields its kernel handler reads (spot-checked against io_uring_enter(2)'s field table).
@Suite(.timeLimit(.minutes(1))) struct EncoderCoverageTests {
    static let fd = FileDescriptor(rawValue: 5)
    nonisolated(unsafe) static let raw = UnsafeMutableRawPointer(bitPattern: 0x1000)!
    nonisolated(unsafe) static let buffer = UnsafeMutableRawBufferPointer(start: raw, count: 64)
    nonisolated(unsafe) static let chars = UnsafePointer<CChar>(OpaquePointer(raw))
    nonisolated(unsafe) static let ts = UnsafePointer<KernelTimespec>(OpaquePointer(raw))
    nonisolated(unsafe) static let vecs = UnsafeBufferPointer<iovec>(start: UnsafePointer(OpaquePointer(raw)), count: 2)
    nonisolated(unsafe) static let ints = UnsafeMutableBufferPointer<Int32>(
        start: UnsafeMutablePointer(OpaquePointer(raw)), count: 2)

    static var oneOfEach: [SubmissionEntry] {
        let r = UnsafeRawBufferPointer(buffer)
        return [
            .nop(), .readv(fd, vecs, offset: 1), .writev(fd, vecs, offset: 1), .fsync(fd),
            .readFixed(fd, into: buffer, offset: 0, bufferIndex: 1),
            .writeFixed(fd, from: r, offset: 0, bufferIndex: 1),
            .pollAdd(fd, events: .readable), .pollRemove(target: 1), .syncFileRange(fd, offset: 0, length: 1),
            .sendmsg(fd, UnsafePointer(OpaquePointer(raw))), .recvmsg(fd, UnsafeMutablePointer(OpaquePointer(raw))),
            .timeout(ts), .timeoutRemove(target: 1), .accept(fd), .cancel(userData: 1), .linkTimeout(ts),
            .connect(fd, address: raw, length: 16), .fallocate(fd, offset: 0, length: 1),
            .openat(path: chars, flags: 0), .close(fd), .filesUpdate(ints, offset: 0),
            .statx(path: chars, mask: 1, into: raw), .read(fd, into: buffer, offset: 0), .write(fd, from: r, offset: 0),
            .fadvise(fd, offset: 0, length: 1, advice: 0), .madvise(buffer, advice: 0), .send(fd, r),
            .recv(fd, into: buffer), .openat2(path: chars, how: UnsafePointer(OpaquePointer(raw))),
            .epollCtl(fd, operation: 1, fd: fd, event: raw), .splice(from: fd, offset: 0, to: fd, offset: 0, length: 1),
            .provideBuffers(raw, length: 1, count: 1, group: 1, firstID: 0), .removeBuffers(count: 1, group: 1),
            .tee(from: fd, to: fd, length: 1), .shutdown(fd, how: 0), .renameat(chars, chars), .unlinkat(path: chars),
            .mkdirat(path: chars, mode: 0), .symlinkat(target: chars, linkPath: chars), .linkat(chars, chars),
            .messageRing(fd, result: 0, userData: 0), .fsetxattr(fd, name: chars, value: r),
            .setxattr(path: chars, name: chars, value: r), .fgetxattr(fd, name: chars, into: buffer),
            .getxattr(path: chars, name: chars, into: buffer), .socket(domain: 2, type: 1),
            .uringCommand(fd, commandOp: 1), .sendZeroCopy(fd, r),
            .sendmsgZeroCopy(fd, UnsafePointer(OpaquePointer(raw))),
            .readMultishot(fd, bufferGroup: 1), .waitid(idType: 1, id: 1, info: nil, options: 4),
            .futexWait(raw, expected: 0, futexFlags: 2), .futexWake(raw, count: 1, futexFlags: 2),
            .futexWaitv(UnsafeBufferPointer(start: UnsafePointer(OpaquePointer(raw)), count: 1)),
            .fixedFdInstall(slot: 1), .ftruncate(fd, length: 1), .bind(fd, address: raw, length: 16),
            .listen(fd, backlog: 1), .recvZeroCopy(fd, interfaceQueue: 0), .epollWait(fd, events: raw, maxEvents: 1),
            .readvFixed(fd, vecs, offset: 0, bufferIndex: 1), .writevFixed(fd, vecs, offset: 0, bufferIndex: 1),
            .pipe(UnsafeMutablePointer(OpaquePointer(raw))),
        ]
    }

    @Test func everyOpcodeHasAnEncoder() {
        let ops = Set(Self.oneOfEach.map(\.opcode))
        #expect(ops == Set(Opcode.allKnown.map(\.opcode.rawValue)))
        #expect(Self.oneOfEach.count == 63)
        // Nothing sets fields the kernel reserves: personality is the caller's, pad2 is unused.
        #expect(Self.oneOfEach.allSatisfy { $0.personality == 0 && $0.pad2 == 0 && $0.userData == 0 })
    }

    @Test func directDestinationsAndMultishotBits() {
        #expect(FileDestination.descriptor.fileIndex == 0)
        #expect(FileDestination.fixedSlot(0).fileIndex == 1)
        #expect(FileDestination.allocateFixedSlot.fileIndex == UInt32.max)
        let accept = SubmissionEntry.accept(Self.fd, multishot: true, destination: .allocateFixedSlot)
        #expect(accept.ioprio == 1 && accept.fileIndex == UInt32.max)
        let recv = SubmissionEntry.recv(Self.fd, bufferGroup: 9, options: [.multishot, .bundle])
        #expect(recv.ioprio == 0x12 && recv.bufIndex == 9 && recv.sqeFlags == .bufferSelect)
        let zc = SubmissionEntry.sendZeroCopy(Self.fd, UnsafeRawBufferPointer(Self.buffer), fixedBufferIndex: 4)
        #expect(zc.ioprio == SendReceiveFlags.fixedBuffer.rawValue && zc.bufIndex == 4)
        let closeSlot = SubmissionEntry.close(fixedSlot: 6)
        #expect(closeSlot.fd == 0 && closeSlot.fileIndex == 7)
        let install = SubmissionEntry.fixedFdInstall(slot: 3)
        #expect(install.fd == 3 && install.sqeFlags == .fixedFile)
        let poll = SubmissionEntry.pollAdd(Self.fd, events: [.readable, .writable], flags: .multishot)
        #expect(poll.opFlags == 5 && poll.len == 1)
        let socket = SubmissionEntry.socket(domain: 10, type: 2, protocol: 17, destination: .fixedSlot(2))
        #expect(socket.fd == 10 && socket.off == 2 && socket.len == 17 && socket.fileIndex == 3)
        let splice = SubmissionEntry.splice(
            from: FileDescriptor(rawValue: 3), offset: 7, to: FileDescriptor(rawValue: 4), offset: 8, length: 9)
        #expect(splice.spliceFdIn == 3 && splice.fd == 4 && splice.addr == 7 && splice.off == 8 && splice.len == 9)
        let futex = SubmissionEntry.futexWait(Self.raw, expected: 11, mask: 0xF, futexFlags: 0x82)
        #expect(futex.fd == 0x82 && futex.off == 11 && futex.addr3 == 0xF && futex.opFlags == 0)
        let send = SubmissionEntry.messageRingSendFile(Self.fd, sourceSlot: 2, destination: .fixedSlot(5), userData: 3)
        #expect(send.addr == 1 && send.addr3 == 2 && send.fileIndex == 6 && send.off == 3)
        let waitid = SubmissionEntry.waitid(idType: 1, id: 42, info: Self.raw, options: 4)
        #expect(waitid.fd == 42 && waitid.len == 1 && waitid.spliceFdIn == 4 && waitid.off == 0x1000)
        let update = SubmissionEntry.timeoutUpdate(target: 8, Self.ts)
        #expect(update.opFlags == TimeoutFlags.update.rawValue && update.addr == 8 && update.off == 0x1000)
        let linkUpdate = SubmissionEntry.timeoutUpdate(target: 8, Self.ts, flags: .linkTimeoutUpdate)
        #expect(linkUpdate.opFlags == TimeoutFlags.linkTimeoutUpdate.rawValue)
    }
}
