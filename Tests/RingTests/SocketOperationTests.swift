import CKernelHeader
import Glibc
import SystemPackage
import Testing

@testable import Ring

/// Network opcodes over loopback and socket pairs.
@Suite(.timeLimit(.minutes(1))) struct SocketOperationTests {
    /// A sockaddr_in for 127.0.0.1:port, pinned.
    static func loopback(port: UInt16) -> PinnedBytes {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return PinnedBytes(withUnsafeBytes(of: address) { Array($0) })
    }

    @Test func socketBindListenConnectAcceptSendRecv() throws {
        // IORING_OP_BIND and IORING_OP_LISTEN arrived in 6.11; before that the listener is set
        // up with the system calls, the rest runs through the ring, and the test reports the skip
        // at the end.
        let ringListens = KernelOffers.probe.supports(.bind) && KernelOffers.probe.supports(.listen)
        var ring = try Ring(entries: 32)
        let s = try ring.run(.socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue)))
        #expect(s.result >= 0)
        let listener = FileDescriptor(rawValue: s.result)
        defer { try? listener.close() }
        var one: Int32 = 1
        setsockopt(listener.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        let any = Self.loopback(port: 0)
        if ringListens {
            #expect(
                try ring.run(.bind(listener, address: any.buffer.baseAddress!, length: socklen_t(any.buffer.count)))
                    .result == 0)
            #expect(try ring.run(.listen(listener, backlog: 16)).result == 0)
        } else {
            let address = UnsafeRawPointer(any.buffer.baseAddress!).assumingMemoryBound(to: sockaddr.self)
            #expect(Glibc.bind(listener.rawValue, address, socklen_t(any.buffer.count)) == 0)
            #expect(Glibc.listen(listener.rawValue, 16) == 0)
        }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &bound) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(listener.rawValue, $0, &length) }
        }
        let target = Self.loopback(port: UInt16(bigEndian: bound.sin_port))

        // Multishot accept: two clients, two completions with F_MORE, one SQE.
        var clients: [FileDescriptor] = []
        for i in 0..<2 {
            let c = try ring.run(.socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue)), userData: UInt64(200 + i))
            clients.append(FileDescriptor(rawValue: c.result))
        }
        ring.mustPush(.accept(listener, multishot: true).userData(100))
        try ring.submit()
        for (i, client) in clients.enumerated() {
            ring.mustPush(
                .connect(client, address: target.buffer.baseAddress!, length: socklen_t(target.buffer.count)).userData(
                    UInt64(300 + i)))
        }
        var accepted: [Completion] = [], connected: [Completion] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while (accepted.count < 2 || connected.count < 2) && ContinuousClock.now < deadline {
            try ring.submitAndWait(1, timeout: .milliseconds(100))
            ring.forEachCompletion { c in
                if c.userData == 100 { accepted.append(c) } else { connected.append(c) }
            }
        }
        #expect(connected.map(\.result) == [0, 0])
        #expect(accepted.count == 2 && accepted.allSatisfy { $0.result >= 0 && $0.hasMore })
        let server = FileDescriptor(rawValue: accepted[0].result)
        defer {
            for fd in clients { try? fd.close() }
            for c in accepted { try? FileDescriptor(rawValue: c.result).close() }
        }
        // The peer of accepted[0] is whichever client connected first; send from both, read one.
        let message = PinnedBytes(Array("ping".utf8))
        #expect(try ring.run(.send(clients[0], message.readOnly)).result == 4)
        #expect(try ring.run(.send(clients[1], message.readOnly)).result == 4)
        let inbox = PinnedBytes(count: 16)
        #expect(try ring.run(.recv(server, into: inbox.buffer)).result == 4)
        #expect(Array(inbox.bytes.prefix(4)) == Array("ping".utf8))

        #expect(try ring.run(.shutdown(clients[0], how: Int32(SHUT_WR))).result == 0)
        // Cancel the multishot accept: its final completion comes without F_MORE.
        ring.mustPush(.cancel(userData: 100).userData(101))
        let end = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(end.first?.result == -ECANCELED && end.first?.hasMore == false)
        if !ringListens { _ = KernelOffers.opcode(.bind, since: "6.11") && KernelOffers.opcode(.listen, since: "6.11") }
    }

    @Test func messagesAndZeroCopy() throws {
        var ring = try Ring(entries: 16)
        let pair = try SocketPair()
        let payload = PinnedBytes(Array("message!".utf8))
        let iov = Pinned(iovec(iov_base: payload.buffer.baseAddress, iov_len: 8))
        var header = msghdr()
        header.msg_iov = iov.pointer
        header.msg_iovlen = 1
        let sendHeader = Pinned(header)
        #expect(try ring.run(.sendmsg(pair.a, sendHeader.pointer)).result == 8)
        let inbox = PinnedBytes(count: 8)
        let inIov = Pinned(iovec(iov_base: inbox.buffer.baseAddress, iov_len: 8))
        var inHeader = msghdr()
        inHeader.msg_iov = inIov.pointer
        inHeader.msg_iovlen = 1
        let recvHeader = Pinned(inHeader)
        #expect(try ring.run(.recvmsg(pair.b, recvHeader.pointer)).result == 8)
        #expect(inbox.bytes == Array("message!".utf8))

        // Zero-copy send (TCP; AF_UNIX has no zero-copy): a result with F_MORE, then the
        // notification with F_NOTIF once the kernel has let go of the buffer.
        let tcp = try TCPPair()
        ring.mustPush(.sendZeroCopy(tcp.client, payload.readOnly).userData(7))
        let zc = try ring.collect(2)
        let result = zc.first { !$0.flags.contains(.notification) }
        let notification = zc.first { $0.flags.contains(.notification) }
        #expect(result?.result == 8 && result?.hasMore == true)
        #expect(notification != nil && notification?.hasMore == false)
        var tcpHeader = header
        tcpHeader.msg_iov = iov.pointer
        let tcpSendHeader = Pinned(tcpHeader)
        ring.mustPush(.sendmsgZeroCopy(tcp.client, tcpSendHeader.pointer).userData(8))
        let zcm = try ring.collect(2)
        #expect(zcm.contains { $0.result == 8 } && zcm.contains { $0.flags.contains(.notification) })
        var received: [UInt8] = []
        while received.count < 16 { received += try readSome(tcp.server, 64) }
        #expect(received == Array("message!message!".utf8))
    }

    @Test func pollSingleMultishotUpdateAndRemove() throws {
        var ring = try Ring(entries: 16)
        let pipe = try TestPipe()
        ring.mustPush(.pollAdd(pipe.read, events: .readable).userData(1))
        try ring.submit()
        try writeAll(pipe.write, [1])
        let single = try ring.collect(1)
        #expect(single.first.map { PollEvents(rawValue: UInt32(bitPattern: $0.result)).contains(.readable) } == true)

        // Multishot, level-triggered on a readable pipe: several completions with F_MORE.
        ring.mustPush(.pollAdd(pipe.read, events: .readable, flags: [.multishot]).userData(2))
        try ring.submit()
        try writeAll(pipe.write, [2])
        _ = try readSome(pipe.read, 8)
        try writeAll(pipe.write, [3])
        var shots: [Completion] = []
        let deadline = ContinuousClock.now + .seconds(2)
        while shots.count < 2 && ContinuousClock.now < deadline {
            try ring.submitAndWait(1, timeout: .milliseconds(50))
            ring.forEachCompletion { shots.append($0) }
        }
        #expect(shots.count >= 2 && shots.allSatisfy { $0.userData == 2 && $0.hasMore })
        // Update its user data, then remove it.
        #expect(
            try ring.run(.pollUpdate(target: 2, newUserData: 3, flags: [.updateUserData]), userData: 50).result == 0)
        ring.mustPush(.pollRemove(target: 3).userData(51))
        var removal: [Completion] = []
        let end = ContinuousClock.now + .seconds(2)
        while !removal.contains(where: { $0.userData == 51 }) && ContinuousClock.now < end {
            try ring.submitAndWait(1, timeout: .milliseconds(50))
            ring.forEachCompletion { removal.append($0) }
        }
        #expect(removal.contains { $0.userData == 51 && $0.result == 0 })
        #expect(try ring.run(.pollRemove(target: 999)).result == -ENOENT)
    }

    @Test func epollThroughTheRing() throws {
        var ring = try Ring(entries: 16)
        let epfd = epoll_create1(0)
        #expect(epfd >= 0)
        let epoll = FileDescriptor(rawValue: epfd)
        defer { try? epoll.close() }
        let pipe = try TestPipe()
        // struct epoll_event written by hand: events u32, then data u64 (packed on x86_64).
        let size = kh_epoll_event_size()
        let event = PinnedBytes(count: size)
        event.buffer.storeBytes(of: UInt32(1), as: UInt32.self)  // EPOLLIN
        event.buffer.storeBytes(of: UInt64(77), toByteOffset: size - 8, as: UInt64.self)
        #expect(
            try ring.run(
                .epollCtl(epoll, operation: 1 /* EPOLL_CTL_ADD */, fd: pipe.read, event: event.buffer.baseAddress)
            ).result == 0)
        try writeAll(pipe.write, [9])
        let events = PinnedBytes(count: size * 4)
        guard KernelOffers.opcode(.epollWait, since: "6.15") else { return }
        #expect(try ring.run(.epollWait(epoll, events: events.buffer.baseAddress!, maxEvents: 4)).result == 1)
        #expect(events.buffer.loadUnaligned(fromByteOffset: size - 8, as: UInt64.self) == 77)
    }

    @Test func passthroughAndZeroCopyReceiveAreRefusedWithoutHardware() throws {
        var ring = try Ring(entries: 8)
        let file = try TemporaryFile()
        let cmd = try ring.run(.uringCommand(file.fd, commandOp: 0))
        #expect(cmd.result == -EOPNOTSUPP || cmd.result == -EINVAL, "regular files have no uring_cmd (\(cmd.result))")
        let pair = try SocketPair()
        let zc = try ring.run(.recvZeroCopy(pair.a, interfaceQueue: 0))
        #expect(zc.result < 0, "no zcrx queue is registered, so RECV_ZC must fail (\(zc.result))")
    }
}

/// A connected TCP pair on 127.0.0.1, made with plain system calls.
final class TCPPair {
    let client: FileDescriptor
    let server: FileDescriptor

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                guard bind(listener, sa, length) == 0, Glibc.listen(listener, 4) == 0,
                    getsockname(listener, sa, &length) == 0
                else { throw Errno(rawValue: errno) }
            }
        }
        let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try withUnsafeMutablePointer(to: &address) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                guard Glibc.connect(c, sa, length) == 0 else { throw Errno(rawValue: errno) }
            }
        }
        let s = Glibc.accept(listener, nil, nil)
        guard s >= 0 else { throw Errno(rawValue: errno) }
        client = FileDescriptor(rawValue: c)
        server = FileDescriptor(rawValue: s)
    }

    deinit {
        try? client.close()
        try? server.close()
    }
}
