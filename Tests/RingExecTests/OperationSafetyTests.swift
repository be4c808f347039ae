import Glibc
import Ring
import RingExec
import Synchronization
import SystemPackage
import Testing

/// A connected pair of Unix stream sockets; both closed by `close()`.
struct SocketPair: Sendable {
    let a: FileDescriptor
    let b: FileDescriptor
    init() throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw Errno(rawValue: errno)
        }
        a = FileDescriptor(rawValue: fds[0])
        b = FileDescriptor(rawValue: fds[1])
    }
    func close() {
        try? a.close()
        try? b.close()
    }
}

/// Bytes waiting to be read on `fd` (FIONREAD), without consuming them.
func pendingBytes(_ fd: FileDescriptor) -> Int32 {
    var count: Int32 = 0
    _ = ioctl(fd.rawValue, UInt(FIONREAD), &count)
    return count
}

/// Raw entries that break "one entry, one completion" are refused before submission (issue 13,
/// item 8): the executor frees an awaited operation's record at its first completion, so a
/// second completion (multishot, zero-copy notification), none at all (skip-success), or a link
/// into someone else's entry would read freed memory or hang.
@Suite(.timeLimit(.minutes(1))) struct RawEntryShapeTests {
    /// Under the old code the first readiness completed the submit and freed its record; the
    /// second write made the kernel post another completion naming it (a use-after-free that
    /// trapped with "an operation completed twice" or crashed).
    @Test func multishotPollThroughSubmitIsRefusedUnsubmitted() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let returned = Flag()
        let submitted = Task {
            defer { returned.set() }
            return await executor.submit(.pollAdd(pipe.read, events: .readable, flags: .multishot))
        }
        // Under the old code the poll was armed (and the submit waited): write only once it is.
        _ = await waitUntil { executor.operationsInFlight > 0 || returned.isSet }
        _ = try pipe.write.writeAll([1])
        _ = try pipe.write.writeAll([2])
        // Round trips through the loop: a second completion for a freed record would be reaped here.
        for _ in 0..<3 { try await executor.nop() }
        #expect(await submitted.value == -EINVAL)
        #expect(executor.operationsInFlight == 0)
        #expect(pendingBytes(pipe.read) == 2)
    }

    @Test func everyShapeWithoutExactlyOneCompletionIsRefused() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pair = try SocketPair()
        defer { pair.close() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(.milliseconds(1)))
        defer { timespec.deallocate() }
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { payload.deallocate() }
        payload.initializeMemory(as: UInt8.self, repeating: 7)
        let header = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
        header.initialize(to: msghdr())
        defer { header.deallocate() }

        var shapes: [(String, SubmissionEntry)] = [
            ("multishot poll", .pollAdd(pair.a, events: .readable, flags: .multishot)),
            ("multishot accept", .accept(listener, multishot: true)),
            ("multishot recv", .recv(pair.a, bufferGroup: 900, options: .multishot)),
            ("multishot read", .readMultishot(pair.a, bufferGroup: 900)),
            ("multishot timeout", .timeout(timespec, flags: .multishot)),
            ("zero-copy send", .sendZeroCopy(pair.b, UnsafeRawBufferPointer(payload))),
            ("skip success", .nop().flags(.skipSuccess)),
            ("trailing link", .nop().flags(.link)),
            ("trailing hard link", .nop().flags(.hardLink)),
            (
                "poll update of another request's user data",
                .pollUpdate(target: 16, newUserData: 32, flags: .updateUserData)
            ),
            (
                "poll update to multishot",
                .pollUpdate(target: 16, events: .readable, flags: [.updateEvents, .multishot])
            ),
            ("MSG_RING data", .messageRing(FileDescriptor(rawValue: 0), result: 1, userData: 16)),
        ]
        shapes.append(("multishot recvmsg", .recvmsg(pair.a, header, options: .multishot, bufferGroup: 900)))
        shapes.append(("zero-copy sendmsg", .sendmsgZeroCopy(pair.b, header)))
        for (name, entry) in shapes {
            let result = await executor.submit(entry)
            #expect(result == -EINVAL, "\(name)")
            await #expect(throws: Errno.invalidArgument, "\(name) in a chain") {
                _ = try await executor.submitChain([entry])
            }
        }
        // Nothing reached the kernel: no byte was sent, nothing is in flight, the executor works.
        #expect(pendingBytes(pair.a) == 0)
        try await executor.nop()
        #expect(executor.operationsInFlight == 0)
        // A link is fine before the last entry of a chain, and one-shot shapes still work.
        #expect(try await executor.submitChain([.nop().flags(.link), .nop()]) == [0, 0])
        #expect(await executor.submit(.nop()) == 0)
        #expect(await executor.submit(.timeout(timespec)) == -ETIME)
    }

    /// A raw entry must not take buffers from a group a `messages()` stream owns: the stream
    /// recycles (and at its end frees) them on its own schedule.
    @Test func bufferSelectFromAStreamsGroupIsRefused() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.multishotReceive) else { return }
        let pair = try SocketPair()
        defer { pair.close() }
        let stream = try await executor.messages(pair.a, bufferSize: 64, bufferCount: 4)
        // The first stream of a fresh executor owns group 0.
        #expect(await executor.submit(.recv(pair.a, bufferGroup: 0)) == -EINVAL)
        #expect(await executor.submit(.read(pair.a, bufferGroup: 0, offset: 0)) == -EINVAL)
        _ = stream
    }

    /// `multishot(_:)` re-arms a request the kernel ends while the stream is wanted: a one-shot
    /// entry was submitted again forever, and a zero-copy send's notification was taken for the
    /// end of a multishot (and the send repeated). Both now end the stream with EINVAL.
    @Test func multishotStreamRefusesOtherShapes() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pair = try SocketPair()
        defer { pair.close() }
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { payload.deallocate() }
        payload.initializeMemory(as: UInt8.self, repeating: 7)
        let shapes: [(String, SubmissionEntry)] = [
            ("one-shot nop", .nop()),
            ("one-shot poll", .pollAdd(pair.b, events: .writable)),
            ("zero-copy send", .sendZeroCopy(pair.b, UnsafeRawBufferPointer(payload))),
            ("skip success", .pollAdd(pair.a, events: .readable, flags: .multishot).flags(.skipSuccess)),
            ("linked", .pollAdd(pair.a, events: .readable, flags: .multishot).flags(.link)),
        ]
        for (name, entry) in shapes {
            var received = 0
            await #expect(throws: Errno.invalidArgument, "\(name)") {
                for try await _ in executor.multishot(entry) {
                    received += 1
                    if received == 3 { break }
                }
            }
            #expect(received == 0, "\(name)")
        }
        #expect(pendingBytes(pair.a) == 0)
    }
}
