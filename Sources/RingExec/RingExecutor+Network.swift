public import Glibc
public import Ring
public import SystemPackage

/// An IPv4, IPv6 or Unix-domain socket address, stored by value.
public struct SocketAddress: @unchecked Sendable, CustomStringConvertible {
    var storage = sockaddr_storage()
    /// The length of the address actually stored.
    public internal(set) var length: socklen_t

    /// `host` is a numeric address (`inet_pton(3)`): "127.0.0.1", "::1". Throws `EINVAL`.
    public init(host: String, port: UInt16) throws(Errno) {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            storage = Self.store(v4)
            return
        }
        var v6 = sockaddr_in6()
        guard inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 else { throw .invalidArgument }
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = port.bigEndian
        length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        storage = Self.store(v6)
    }

    /// 127.0.0.1:`port` (0 lets the kernel choose).
    public static func loopback(port: UInt16) -> SocketAddress {
        try! SocketAddress(host: "127.0.0.1", port: port)
    }

    /// A Unix-domain socket path (at most 107 bytes).
    public init(unixPath path: String) throws(Errno) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path), !bytes.contains(0) else {
            throw .invalidArgument
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        storage = Self.store(address)
    }

    /// Copies a concrete `sockaddr_*` into a `sockaddr_storage`.
    private static func store<T>(_ address: T) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { target in
            withUnsafeBytes(of: address) { target.copyMemory(from: $0) }
        }
        return storage
    }

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// The address family (`AF_INET`, `AF_INET6`, `AF_UNIX`).
    public var family: Int32 { Int32(storage.ss_family) }

    /// The port of an IP address (0 otherwise).
    public var port: UInt16 {
        var copy = storage
        return withUnsafeBytes(of: &copy) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET, AF_INET6: UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
            default: 0
            }
        }
    }

    /// The address as text, for example `127.0.0.1:8080` or `[::1]:8080`.
    public var description: String {
        var copy = storage
        var text = [CChar](repeating: 0, count: 128)
        return withUnsafeBytes(of: &copy) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET:
                _ = inet_ntop(AF_INET, raw.baseAddress! + 4, &text, 128)
                return "\(Self.string(text)):\(port)"
            case AF_INET6:
                _ = inet_ntop(AF_INET6, raw.baseAddress! + 8, &text, 128)
                return "[\(Self.string(text))]:\(port)"
            default:
                return "unix:" + String(cString: raw.baseAddress!.advanced(by: 2).assumingMemoryBound(to: CChar.self))
            }
        }
    }

    private static func string(_ text: [CChar]) -> String {
        let bytes = text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Copies the address into memory the caller frees after the operation's completion.
    func copied() -> UnsafeMutableRawPointer {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<sockaddr_storage>.size, alignment: 8)
        var copy = storage
        memory.copyMemory(from: &copy, byteCount: MemoryLayout<sockaddr_storage>.size)
        return memory
    }
}

/// A socket option with its value's Swift type, for `RingExecutor.setOption(_:to:on:)` and
/// `option(_:of:)`. The common ones are below; others that take an `int` can be named with
/// `init(level:name:)`.
public struct SocketOption<Value>: Sendable {
    /// The protocol level (`SOL_SOCKET`, `IPPROTO_TCP`, ...).
    public let level: Int32
    /// The option (`SO_REUSEADDR`, `TCP_NODELAY`, ...).
    public let name: Int32
    let encode: @Sendable (Value) -> Int32
    let decode: @Sendable (Int32) -> Value
}

extension SocketOption where Value == Bool {
    /// An on/off option taking an `int`.
    public init(level: Int32, name: Int32) {
        self.init(level: level, name: name, encode: { $0 ? 1 : 0 }, decode: { $0 != 0 })
    }

    /// `SO_REUSEADDR`: bind to a local address still held by connections in `TIME_WAIT`
    /// (set it on a listener before `bind`, or a restarted server meets `EADDRINUSE`).
    public static var reuseAddress: Self { Self(level: SOL_SOCKET, name: SO_REUSEADDR) }
    /// `SO_REUSEPORT`: several sockets bind the same address and port; the kernel spreads
    /// incoming connections among them (one listener per executor). Set before `bind`.
    public static var reusePort: Self { Self(level: SOL_SOCKET, name: SO_REUSEPORT) }
    /// `SO_KEEPALIVE`: probe an idle connection's peer, and fail the socket when it is gone.
    public static var keepAlive: Self { Self(level: SOL_SOCKET, name: SO_KEEPALIVE) }
    /// `TCP_NODELAY`: send small segments at once instead of coalescing them (Nagle's
    /// algorithm off): lower latency for request/response protocols. TCP sockets only.
    public static var noDelay: Self { Self(level: Int32(IPPROTO_TCP), name: TCP_NODELAY) }
}

extension SocketOption where Value == Int32 {
    /// An option taking an `int` value.
    public init(level: Int32, name: Int32) {
        self.init(level: level, name: name, encode: { $0 }, decode: { $0 })
    }

    /// `SO_RCVBUF`: the receive buffer size in bytes (Linux doubles what is set, and reports
    /// the doubled value).
    public static var receiveBufferSize: Self { Self(level: SOL_SOCKET, name: SO_RCVBUF) }
    /// `SO_SNDBUF`: the send buffer size in bytes (doubled like `receiveBufferSize`).
    public static var sendBufferSize: Self { Self(level: SOL_SOCKET, name: SO_SNDBUF) }
}

// Sockets (io_uring only). Memory handed to the kernel (addresses, buffers) stays valid until
// each operation's completion, also when the task is cancelled.
extension RingExecutor {
    /// `socket(2)` (close-on-exec): io_uring `SOCKET` (Linux 5.19+), or the plain system call on
    /// older kernels (it never blocks).
    public nonisolated(nonsending) func socket(
        domain: Int32 = AF_INET, type: Int32 = Int32(SOCK_STREAM.rawValue), protocol proto: Int32 = 0
    )
        async throws -> FileDescriptor
    {
        let type = type | Int32(SOCK_CLOEXEC.rawValue)
        if systemCallInstead(of: .socket) {
            return FileDescriptor(rawValue: try systemCall { Glibc.socket(domain, type, proto) })
        }
        return FileDescriptor(rawValue: Int32(try await perform(.socket(domain: domain, type: type, protocol: proto))))
    }

    /// `bind(2)`: io_uring `BIND` (Linux 6.11+), or the plain system call on older kernels
    /// (it never blocks).
    public nonisolated(nonsending) func bind(_ fd: FileDescriptor, to address: SocketAddress) async throws {
        let memory = address.copied()
        defer { memory.deallocate() }
        if systemCallInstead(of: .bind) {
            _ = try systemCall {
                Glibc.bind(fd.rawValue, memory.bindMemory(to: sockaddr.self, capacity: 1), address.length)
            }
            return
        }
        _ = try await perform(.bind(fd, address: memory, length: address.length))
    }

    /// `listen(2)`: io_uring `LISTEN` (Linux 6.11+), or the plain system call on older kernels.
    public nonisolated(nonsending) func listen(_ fd: FileDescriptor, backlog: Int32 = 128) async throws {
        if systemCallInstead(of: .listen) {
            _ = try systemCall { Glibc.listen(fd.rawValue, backlog) }
            return
        }
        _ = try await perform(.listen(fd, backlog: backlog))
    }

    /// Whether this io_uring executor's kernel lacks `op` for a call that has a plain system
    /// call doing the same without blocking (the other engines refuse socket calls in `perform`).
    private func systemCallInstead(of op: Opcode) -> Bool {
        guard let uring = engine as? URingEngine else { return false }
        return !uring.offers(op)
    }

    /// Makes a non-blocking system call on the caller's thread, with `perform`'s rules around it:
    /// a cancelled task or a shut-down executor throws before the call; a failure is its `Errno`.
    private func systemCall(_ body: () -> Int32) throws -> Int32 {
        try Task.checkCancellation()
        if isShutDown { throw Errno(rawValue: ESHUTDOWN) }
        let result = body()
        if result < 0 { throw Errno(rawValue: errno) }
        return result
    }

    // MARK: Socket options and addresses

    /// Sets a socket option (`setsockopt(2)`), for example
    /// `try await executor.setOption(.reuseAddress, to: true, on: listener)`. A plain system call
    /// on the caller's thread (it never blocks), with `perform`'s rules around it: a cancelled
    /// task throws `CancellationError` and a shut-down executor `ESHUTDOWN` before the call; the
    /// kernel's refusal is its `Errno` (`ENOPROTOOPT` for an option the socket lacks, e.g.
    /// `.noDelay` on a Unix-domain socket; `EBADF`, `ENOTSOCK`).
    public nonisolated(nonsending) func setOption<Value>(
        _ option: SocketOption<Value>, to value: Value, on fd: FileDescriptor
    ) async throws {
        var raw = option.encode(value)
        _ = try systemCall {
            setsockopt(fd.rawValue, option.level, option.name, &raw, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Reads a socket option (`getsockopt(2)`); the same rules as `setOption`. Linux reports
    /// `.receiveBufferSize` and `.sendBufferSize` doubled (the kernel's bookkeeping overhead).
    public nonisolated(nonsending) func option<Value>(_ option: SocketOption<Value>, of fd: FileDescriptor) async throws
        -> Value
    {
        var raw: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = try systemCall { getsockopt(fd.rawValue, option.level, option.name, &raw, &size) }
        return option.decode(raw)
    }

    /// The address `fd` is bound to (`getsockname(2)`): after binding to port 0, the port the
    /// kernel chose. Same rules as `setOption`.
    public nonisolated(nonsending) func localAddress(of fd: FileDescriptor) async throws -> SocketAddress {
        try socketAddress { getsockname(fd.rawValue, $0, $1) }
    }

    /// The address of `fd`'s peer (`getpeername(2)`); `ENOTCONN` when it has none. Same rules
    /// as `setOption`.
    public nonisolated(nonsending) func peerAddress(of fd: FileDescriptor) async throws -> SocketAddress {
        try socketAddress { getpeername(fd.rawValue, $0, $1) }
    }

    private func socketAddress(
        _ call: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) throws -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try systemCall {
            withUnsafeMutableBytes(of: &storage) {
                call($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
            }
        }
        return SocketAddress(storage: storage, length: length)
    }

    /// `connect(2)`.
    public nonisolated(nonsending) func connect(_ fd: FileDescriptor, to address: SocketAddress) async throws {
        let memory = address.copied()
        defer { memory.deallocate() }
        _ = try await perform(.connect(fd, address: memory, length: address.length))
    }

    /// Accepts one connection (close-on-exec).
    public nonisolated(nonsending) func accept(_ fd: FileDescriptor) async throws -> FileDescriptor {
        FileDescriptor(rawValue: Int32(try await perform(.accept(fd, flags: Int32(SOCK_CLOEXEC.rawValue)))))
    }

    /// Accepts one connection (close-on-exec) and returns it with the peer's address. The
    /// address memory stays allocated until the kernel's completion, also when the task is
    /// cancelled.
    public nonisolated(nonsending) func acceptWithPeer(_ fd: FileDescriptor) async throws -> (
        FileDescriptor, peer: SocketAddress
    ) {
        let peer = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        peer.initialize(to: sockaddr_storage())
        let length = UnsafeMutablePointer<socklen_t>.allocate(capacity: 1)
        length.initialize(to: socklen_t(MemoryLayout<sockaddr_storage>.size))
        defer {  // `perform` returns only after the completion: the kernel is done with both
            peer.deallocate()
            length.deallocate()
        }
        let entry = SubmissionEntry.accept(
            fd, peer: UnsafeMutableRawPointer(peer), peerLength: length, flags: Int32(SOCK_CLOEXEC.rawValue))
        let accepted = FileDescriptor(rawValue: Int32(try await perform(entry)))
        return (accepted, SocketAddress(storage: peer.pointee, length: length.pointee))
    }

    /// Errors of a listening socket's accept that a busy server meets and lives through: out of
    /// descriptors (`EMFILE`, `ENFILE`) or memory (`ENOBUFS`, `ENOMEM`), a connection that went
    /// away while queued (`ECONNABORTED`), a firewall's refusal (`EPERM`), and the transient
    /// `EAGAIN`/`EINTR`.
    public static let transientAcceptErrors: Set<Errno> = [
        .tooManyOpenFiles, .tooManyOpenFilesInSystem, .noBufferSpace, .noMemory, .connectionAbort,
        .notPermitted, .resourceTemporarilyUnavailable, .interrupted,
    ]

    /// Accepts connections with one multishot request for as long as the stream is iterated.
    /// Ending the iteration (or cancelling its task) cancels the request. If the kernel ends the
    /// multishot on its own (e.g. under CQ pressure), the executor re-arms it.
    ///
    /// Errors in `transientAcceptErrors` (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`,
    /// `ECONNABORTED`, `EPERM`, ...) do not end the stream: each is passed to `onError` (on the
    /// executor's loop thread: keep it short, e.g. count or log), and the request is armed again
    /// after a pause of 10 ms that doubles with each error in a row up to 1 s, on a kernel
    /// timeout; the connection that met the error stays in the listen backlog. (The kernel reads
    /// `RLIMIT_NOFILE` when a request is armed: a limit raised meanwhile counts from the next
    /// re-arm.)
    ///
    /// How the stream ends: it finishes without an error when the listening socket is closed
    /// through this executor's `close(_:)` or shut down (`shutdown(_:how:)` with `SHUT_RD` or
    /// `SHUT_RDWR`, the executor's or the system call: the kernel then fails the accept with
    /// `EINVAL`), and when the executor shuts down. A socket that is not listening when the
    /// stream is made ends it at once with `EINVAL` (`ENOTSOCK`, `EBADF` for what is not a
    /// socket); other errors end it with their `Errno`. Closing the descriptor behind the
    /// executor's back (`FileDescriptor.close()`, `Glibc.close`) does not end it: the pending
    /// accept holds the socket open in the kernel.
    ///
    /// The stream owns every descriptor it has accepted and not yet handed out: those still
    /// buffered when the iteration ends (a `break`, a thrown error, a cancelled task, the stream
    /// dropped) or accepted after it are closed. At most `bufferLimit` (at least 1) wait in the
    /// stream: when that many are waiting, the request is cancelled and pending connections stay
    /// in the listen backlog until the consumer has taken half of them, then it is re-armed.
    ///
    /// Before Linux 5.19 (no multishot accept) each connection is accepted by its own request,
    /// re-armed as each completes, with the same stream, ownership and `bufferLimit` rules.
    public func connections(
        _ fd: FileDescriptor, bufferLimit: Int = 64, onError: (@Sendable (Errno) -> Void)? = nil
    ) -> AsyncThrowingStream<FileDescriptor, any Error> {
        let multishot = (engine as? URingEngine)?.supportsMultishotAccept ?? true
        let entry = SubmissionEntry.accept(fd, flags: Int32(SOCK_CLOEXEC.rawValue), multishot: multishot)
        if let refusal = refusal("multishot accept", entry) {
            return AsyncThrowingStream { $0.finish(throwing: refusal) }
        }
        if !isShutDown {  // after shutdown the stream ends with ESHUTDOWN, like every call
            var listening: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            let failed = getsockopt(fd.rawValue, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0
            if failed || listening == 0 {
                let error = failed ? Errno(rawValue: errno) : Errno.invalidArgument
                return AsyncThrowingStream { $0.finish(throwing: error) }
            }
        }
        return Multishot<FileDescriptor>(
            executor: self, entry: entry, bufferLimit: bufferLimit,
            decode: { result, _ in .element(FileDescriptor(rawValue: result)) }, discard: { try? $0.close() },
            classify: { code in
                if code == EINVAL { return .finish }  // it was listening: shut down since
                if code == ESHUTDOWN { return .finish }  // re-armed while the executor shuts down
                return Self.transientAcceptErrors.contains(Errno(rawValue: code)) ? .retry : .fail
            },
            onError: onError
        ).start()
    }

    /// Submits any multishot request (`.pollAdd(fd, events:, flags: .multishot)`,
    /// `.timeout(spec, flags: .multishot)`, `.accept(fd, multishot: true)`, ...) and yields each
    /// completion's raw result. Same lifetime rules as `connections(_:)`: ending the iteration
    /// cancels the request; a final error ends the stream with its `Errno`; a request the kernel
    /// ends by itself while the stream is still wanted is submitted again — except one that ends
    /// with `ENOBUFS` before yielding anything (its buffer group is empty or does not exist),
    /// which ends the stream with that error instead of spinning. Memory the entry
    /// points to must stay valid until the stream has ended. An entry that is not multishot
    /// (a one-shot entry would be re-armed forever), a zero-copy send, an entry with
    /// `IOSQE_CQE_SKIP_SUCCESS`, `.link` or `.hardLink`, or one selecting buffers from a group
    /// another stream of this executor owns ends the stream at once with `EINVAL`, unsubmitted;
    /// an operation the kernel's probe lacks, with `EngineError.kernelLacks`.
    public func multishot(_ entry: SubmissionEntry, bufferLimit: Int = 64) -> AsyncThrowingStream<Int32, any Error> {
        let flags = entry.sqeFlags
        if CompletionShape.of(entry) != .multishot || flags.contains(.link) || flags.contains(.hardLink)
            || flags.contains(.bufferSelect) && bufferGroups.isOwned(entry.bufIndex)
        {
            return AsyncThrowingStream { $0.finish(throwing: Errno.invalidArgument) }
        }
        return multishotStream(
            "multishot", entry, bufferLimit: bufferLimit, decode: { result, _ in .element(result) }, discard: { _ in })
    }

    /// A stream fed by one multishot request; finishes at once with `unsupported` on the aio
    /// engines, and with `kernelLacks` when the kernel's probe lacks the operation.
    private func multishotStream<Element: Sendable>(
        _ operation: String, _ entry: SubmissionEntry, bufferLimit: Int,
        decode: @escaping (Int32, UInt32) -> Multishot<Element>.Decoded, discard: @escaping (Element) -> Void
    ) -> AsyncThrowingStream<Element, any Error> {
        if let error = refusal(operation, entry) { return AsyncThrowingStream { $0.finish(throwing: error) } }
        return Multishot(executor: self, entry: entry, bufferLimit: bufferLimit, decode: decode, discard: discard)
            .start()
    }

    /// Why a multishot stream cannot start here: `unsupported` on the aio engines, `kernelLacks`
    /// when the kernel's probe lacks the operation; nil when it can.
    func refusal(_ operation: String, _ entry: SubmissionEntry) -> (any Error)? {
        guard engineSelection.engine == .ioURing else {
            return EngineError.unsupported(operation: operation, engine: engineSelection.engine)
        }
        if let uring = engine as? URingEngine, !uring.offers(entry.op), let needs = entry.op.introduced {
            // As `perform` says it: which operation, and which release has it.
            return EngineError.kernelLacks(operation: Self.operationName(entry.op), needs: needs)
        }
        return nil
    }

    /// Sends from `buffer`; returns the bytes sent. `MSG_NOSIGNAL` is always added.
    public nonisolated(nonsending) func send(
        _ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, flags: Int32 = 0
    ) async throws -> Int {
        try await perform(.send(fd, buffer, flags: flags | Int32(MSG_NOSIGNAL)))
    }

    /// Sends all of `bytes` (looping over short sends).
    public nonisolated(nonsending) func send(_ fd: FileDescriptor, bytes: [UInt8]) async throws {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { storage.deallocate() }
        storage.copyBytes(from: bytes)
        var sent = 0
        while sent < bytes.count {
            sent += try await send(fd, from: UnsafeRawBufferPointer(rebasing: storage[sent..<bytes.count]))
        }
    }

    /// Receives into `buffer`; returns the bytes received (0: the peer closed).
    public nonisolated(nonsending) func receive(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, flags: Int32 = 0
    ) async throws
        -> Int
    {
        try await perform(.recv(fd, into: buffer, flags: flags))
    }

    /// Receives up to `count` bytes into a new array (empty: the peer closed).
    public nonisolated(nonsending) func receive(_ fd: FileDescriptor, upTo count: Int) async throws -> [UInt8] {
        guard count > 0 else { throw Errno.invalidArgument }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { storage.deallocate() }
        let received = try await receive(fd, into: storage)
        return Array(storage[..<received])
    }

    /// Receives with one multishot request into a provided-buffer ring of `bufferCount` buffers
    /// of `bufferSize` bytes (registered for this stream under a group id no other live stream
    /// of this executor owns, released when it ends). Each element is one receive's bytes,
    /// copied out so the kernel's buffers go straight back to the ring; on Linux 6.10+ a receive
    /// is a bundle (`IORING_RECVSEND_BUNDLE`) that fills as many buffers as there are bytes
    /// waiting, so an element may hold several buffers' worth. The stream ends when the peer
    /// closes; errors end it with an `Errno`. Linux 6.0+. At most `bufferLimit` (at least 1)
    /// buffers' worth of bytes wait in the stream (for a bundle, about: one may take it past the
    /// limit): then the request is cancelled, the data waits in the socket (TCP pushes back on
    /// the sender), and it is re-armed once the consumer has taken half of them. `EBUSY` when
    /// 65,536 streams of this executor hold a group id each.
    ///
    /// Before Linux 6.0 (no multishot receive into a buffer ring) each message is received by its
    /// own request into one buffer of `bufferSize` bytes that the stream owns, re-armed as each
    /// completes: the same stream, ending and `bufferLimit` rules, without the group id.
    public nonisolated(nonsending) func messages(
        _ fd: FileDescriptor, bufferSize: Int = 16384, bufferCount: Int = 64, bufferLimit: Int = 64
    )
        async throws
        -> AsyncThrowingStream<[UInt8], any Error>
    {
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "multishot receive", engine: engineSelection.engine)
        }
        if let uring = engine as? URingEngine, !uring.supportsMultishotReceive {
            return try await run { () throws -> AsyncThrowingStream<[UInt8], any Error> in
                // Where the buffer-ring path registers its ring: the loop thread, or ESHUTDOWN.
                try self.withRing { _ in }
                // The buffer-ring path's rule: a receive's length is 32 bits.
                guard bufferSize > 0, bufferSize <= Int(UInt32.max) else { throw Errno.invalidArgument }
                // Released by `onEnd`, which runs once no request is in flight (nor ever will
                // be); guarded memory under SWIFT_RING_GUARD_MEMORY=1 catches a late write.
                let buffer = GuardedMemory.allocate(byteCount: bufferSize)
                let stream = Multishot<[UInt8]>(
                    executor: self, entry: .recv(fd, into: buffer), bufferLimit: bufferLimit,
                    decode: { result, _ in result == 0 ? .end : .element(Array(buffer[..<Int(result)])) },
                    discard: { _ in },
                    onEnd: { GuardedMemory.release(buffer) })
                return stream.start()
            }
        }
        // The buffer ring is registered (and later released) on the loop thread.
        return try await run { () throws -> AsyncThrowingStream<[UInt8], any Error> in
            let (group, buffers) = try self.registerProvidedBuffers(count: bufferCount, size: bufferSize)
            return self.receiveStream(
                fd, group: group, buffers: buffers, bufferLimit: bufferLimit,
                onEnd: { buffers.release() })  // gives the group id back too
        }
    }

    /// A multishot receive from `fd` into buffer group `group` (`buffers`), each completion's
    /// bytes copied out and its buffer recycled at once; `onEnd` runs after the last completion.
    /// `ENOBUFS` is handled as `classify` says. Loop thread.
    func receiveStream(
        _ fd: FileDescriptor, group: UInt16, buffers: ProvidedBuffers, bufferLimit: Int,
        onEnd: @escaping () -> Void, classify: @escaping (Int32) -> Multishot<[UInt8]>.ErrorAction = { _ in .fail }
    ) -> AsyncThrowingStream<[UInt8], any Error> {
        // Bundles (Linux 6.10): one completion for as many buffers as the bytes waiting fill.
        let options: SendReceiveFlags = uringEngine?.receivesBundles == true ? [.multishot, .bundle] : .multishot
        let bufferSize = buffers.bufferSize
        let multishot = Multishot<[UInt8]>(
            executor: self, entry: .recv(fd, bufferGroup: group, options: options), bufferLimit: bufferLimit,
            weight: { max(1, ($0.count + bufferSize - 1) / bufferSize) },
            decode: { result, flags in
                if result == 0 { return .end }
                return .element(buffers.take(Completion(userData: 0, result: result, flags: flags)))
            },
            discard: { _ in }, onEnd: onEnd, classify: classify)
        return multishot.start()
    }

    /// `shutdown(2)` (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`): io_uring `SHUTDOWN` (Linux 5.11+), or
    /// the plain system call on older kernels.
    public nonisolated(nonsending) func shutdown(_ fd: FileDescriptor, how: Int32 = Int32(SHUT_WR)) async throws {
        if systemCallInstead(of: .shutdown) {
            _ = try systemCall { Glibc.shutdown(fd.rawValue, how) }
            return
        }
        _ = try await perform(.shutdown(fd, how: how))
    }
}

extension RingExecutor {
    /// Registers a provided-buffer ring under a group id no live stream of this executor owns.
    /// An id the caller registered itself through `withRing` (`EEXIST`) is skipped; the id
    /// returns to the free set when the ring is released. Throws `EBUSY` when every id is taken
    /// (65,536 open streams). Loop thread only (`withRing`).
    func registerProvidedBuffers(count: Int, size: Int) throws -> (UInt16, ProvidedBuffers) {
        var skipped: [UInt16] = []
        defer { for id in skipped { bufferGroups.release(id) } }
        while true {
            guard let group = bufferGroups.allocate() else { throw Errno.resourceBusy }
            do {
                let ids = bufferGroups
                let buffers = try withRing { ring throws(Errno) in
                    ProvidedBuffers(
                        try BufferRing(ring: ring, group: group, count: count, bufferSize: size), group: group, ids: ids
                    )
                }
                return (group, buffers)
            } catch Errno.fileExists where skipped.count < 64 {
                skipped.append(group)  // the caller's own group: keep it out of reach until we settle
            } catch {
                bufferGroups.release(group)
                throw error
            }
        }
    }
}

/// The provided-buffer group ids an executor's receive streams own. An id is taken when a
/// stream registers its buffer ring and given back when that ring is unregistered, so a new
/// stream never lands on a live one's group, however many streams came and went. `submit(_:)`
/// and `multishot(_:)` refuse entries that select buffers from an owned group (they would take
/// the stream's buffers, which the stream recycles and frees on its own schedule).
final class BufferGroupIDs: @unchecked Sendable {
    private let lock = Lock()
    // Under `lock`.
    private var owned: Set<UInt16> = []
    /// Where the next search starts: ids are handed out round-robin, so a just-released id is
    /// the last to be reused.
    private var next: Int
    private var range: ClosedRange<UInt16>

    init(range: ClosedRange<UInt16> = 0...UInt16.max) {
        self.range = range
        next = Int(range.lowerBound)
    }

    /// Tests narrow the range to reach exhaustion and reuse quickly.
    func narrow(to range: ClosedRange<UInt16>) {
        lock.withLock {
            self.range = range
            next = Int(range.lowerBound)
        }
    }

    /// A free id (now owned), or nil when every id in the range is owned.
    func allocate() -> UInt16? {
        lock.withLock {
            let size = range.count
            let low = Int(range.lowerBound)
            for step in 0..<size {
                let id = UInt16(low + (next - low + step) % size)
                if owned.insert(id).inserted {
                    next = Int(id) + 1
                    return id
                }
            }
            return nil
        }
    }

    func release(_ id: UInt16) {
        _ = lock.withLock { owned.remove(id) }
    }

    func isOwned(_ id: UInt16) -> Bool {
        lock.withLock { owned.contains(id) }
    }

    var ownedCount: Int { lock.withLock { owned.count } }
}

/// A provided-buffer ring owned by one receive stream. Touched only on the loop thread.
final class ProvidedBuffers: @unchecked Sendable {
    private var ring: BufferRing?
    private let group: UInt16
    private let ids: BufferGroupIDs
    let bufferSize: Int

    init(_ ring: consuming BufferRing, group: UInt16, ids: BufferGroupIDs) {
        bufferSize = ring.bufferSize
        self.ring = consume ring
        self.group = group
        self.ids = ids
    }

    /// Copies out the bytes a completion delivered and gives its buffers back to the kernel.
    func take(_ completion: Completion) -> [UInt8] {
        guard let id = completion.bufferID, ring != nil else { return [] }
        let size = Int(completion.result)
        if size <= bufferSize {
            let copy = Array(ring!.buffer(id)[..<size])
            ring!.recycle(id)
            return copy
        }
        // A bundle: several buffers, in the order the ring gave them.
        let filled = ring!.bundle(of: completion)
        var copy: [UInt8] = []
        copy.reserveCapacity(size)
        for (_, bytes) in filled { copy.append(contentsOf: bytes) }
        ring!.recycle(filled.lazy.map(\.id))
        return copy
    }

    /// Unregisters and frees the ring (after the last completion that could use it), then gives
    /// its group id back. Idempotent.
    func release() {
        guard ring != nil else { return }
        ring = nil  // BufferRing's deinit unregisters the group before freeing its memory
        ids.release(group)
    }
}

/// One multishot request feeding a bounded, pull-based stream, re-armed when the kernel ends it
/// while the stream is still wanted.
///
/// The stream is an `AsyncThrowingStream(unfolding:)` whose closure holds the only reference to
/// a `Consumer`; when the stream and its iterator are gone (the loop broke, threw, or was never
/// run), the consumer's deinit terminates this object: the request is cancelled and every
/// element not handed out is discarded (descriptors closed), also those the kernel delivers
/// after that. The buffered elements' weight (1 each, or the buffers' worth a receive holds)
/// never exceeds `bufferLimit` plus what the kernel posts between a pause's cancel request and
/// its final completion.
///
/// Threads: `handle` (and `decode`, `onEnd`) run on the executor's loop thread; `next` and
/// `terminate` run on the consumer's; everything shared is under `lock`.
final class Multishot<Element: Sendable>: @unchecked Sendable {
    enum Decoded {
        case element(Element)
        case end
    }

    /// What a request's final error means to its stream.
    enum ErrorAction {
        /// End the stream with the error (the default).
        case fail
        /// End the stream without an error.
        case finish
        /// Report it, wait a little, and arm the request again.
        case retry
    }

    /// What follows a request's final completion.
    private enum AfterFinal {
        case end((any Error)?)
        case rearm
        case wait
        case retry(Errno, Duration)
    }

    /// The first wait before re-arming after a retried error, and the longest: the wait doubles
    /// with each error in a row and starts over once an element arrives.
    static var firstRetryDelay: Duration { .milliseconds(10) }
    static var longestRetryDelay: Duration { .seconds(1) }

    private let lock = Lock()
    // Under `lock`.
    private var buffered: [Element] = []
    /// The weight of `buffered` (see `weight`), which `bufferLimit` bounds.
    private var bufferedWeight = 0
    private var waiters: [UnsafeContinuation<Element?, any Error>] = []
    /// The request in flight (nil between a final completion and the next arm).
    private var current: Operation?
    /// Cancelled by us because `buffered` was full; re-armed when the consumer catches up.
    private var paused = false
    /// Elements the current request has produced: one that ends with ENOBUFS before producing
    /// any had no buffers at all, and re-arming it would only spin.
    private var deliveredByCurrent = 0
    /// The consumer is gone: discard everything.
    private var terminated = false
    /// The request ended for good (nil: no error); the stream ends once `buffered` is empty.
    private var outcome: (any Error)??
    /// `onEnd` has run (it must run once, after the last completion).
    private var ended = false
    /// The wait before the next re-arm after a retried error (zero: none in a row yet).
    private var retryDelay: Duration = .zero

    private let executor: RingExecutor
    private let entry: SubmissionEntry
    private let bufferLimit: Int
    /// How much of `bufferLimit` an element takes: 1, or for a receive the buffers' worth of
    /// bytes it holds (a bundle fills several), so a paused stream holds about `bufferLimit`
    /// buffers of bytes however the kernel grouped them.
    private let weight: (Element) -> Int
    private let decode: (Int32, UInt32) -> Decoded
    private let discard: (Element) -> Void
    private let onEnd: () -> Void
    private let classify: (Int32) -> ErrorAction
    private let onError: ((Errno) -> Void)?
    /// The name of the task that started the stream, shown for its requests.
    private let taskName: String?

    /// `classify` maps a final completion's errno (other than `ECANCELED`) to what the stream
    /// does; `onError` hears each retried one, on the loop thread.
    init(
        executor: RingExecutor, entry: SubmissionEntry, bufferLimit: Int,
        weight: @escaping (Element) -> Int = { _ in 1 },
        decode: @escaping (Int32, UInt32) -> Decoded, discard: @escaping (Element) -> Void,
        onEnd: @escaping () -> Void = {},
        classify: @escaping (Int32) -> ErrorAction = { _ in .fail }, onError: ((Errno) -> Void)? = nil
    ) {
        self.executor = executor
        self.entry = entry
        self.bufferLimit = max(bufferLimit, 1)
        self.weight = weight
        self.decode = decode
        self.discard = discard
        self.onEnd = onEnd
        self.classify = classify
        self.onError = onError
        self.taskName = Task.name
    }

    /// Whoever holds this is the stream's consumer; its deinit ends the stream.
    private final class Consumer: Sendable {
        let source: Multishot
        init(_ source: Multishot) { self.source = source }
        deinit { source.terminate() }
    }

    /// Arms the request and returns the stream that consumes it.
    func start() -> AsyncThrowingStream<Element, any Error> {
        let consumer = Consumer(self)
        arm()
        return AsyncThrowingStream { try await consumer.source.next() }
    }

    // MARK: Consumer side

    private func next() async throws -> Element? {
        if Task.isCancelled {
            terminate()
            return nil
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                var rearm = false
                var result: Result<Element?, any Error>?
                lock.withLock {
                    if !buffered.isEmpty {
                        let element = buffered.removeFirst()
                        bufferedWeight -= weight(element)
                        result = .success(element)
                        // Caught up with a paused request: arm it again (its final completion
                        // has arrived, so there is no request in flight).
                        if paused && current == nil && bufferedWeight <= bufferLimit / 2 && outcome == nil
                            && !terminated
                        {
                            paused = false
                            rearm = true
                        }
                    } else if let outcome {
                        result = outcome.map { .failure($0) } ?? .success(nil)
                        self.outcome = .some(nil)  // an error is reported once; then the stream is over
                    } else if terminated {
                        result = .success(nil)
                    } else {
                        waiters.append(continuation)
                        if paused && current == nil {
                            paused = false
                            rearm = true
                        }
                    }
                }
                if rearm { arm() }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            terminate()
        }
    }

    /// The consumer is gone or cancelled: cancel the request, wake waiters, discard what is left.
    func terminate() {
        let (operation, leftovers, woken, idle) = lock.withLock {
            () -> (Operation?, [Element], [UnsafeContinuation<Element?, any Error>], Bool) in
            if terminated { return (nil, [], [], false) }
            terminated = true
            defer {
                buffered.removeAll()
                bufferedWeight = 0
                waiters.removeAll()
            }
            return (current, buffered, waiters, current == nil && !ended)
        }
        for element in leftovers { discard(element) }
        for waiter in woken { waiter.resume(returning: nil) }
        if let operation {
            executor.requestCancel(operation)  // its final completion runs `onEnd`
        } else if idle {
            finishOnLoop()  // paused with nothing in flight: release on the loop thread
        }
    }

    // MARK: Loop side

    private func arm() {
        let operation = Operation(entry)
        operation.endsAtShutdown = true
        operation.taskName = taskName
        operation.onEach = { [self] result, flags in handle(result, flags) }
        let proceed = lock.withLock { () -> Bool in
            // `current`: a retry's timer and a consumer catching up may both re-arm; one does.
            if terminated || outcome != nil || current != nil { return false }
            current = operation
            deliveredByCurrent = 0
            return true
        }
        guard proceed else { return }
        if !executor.enqueue(operation) {
            finishRequest()  // never submitted: drop it, or it and this object keep each other alive
            end(Errno(rawValue: ESHUTDOWN))
        }
    }

    /// Runs on the loop thread for every completion of the current request.
    private func handle(_ result: Int32, _ flags: UInt32) {
        let more = flags & CQEFlags.more.rawValue != 0
        if result >= 0 {
            switch decode(result, flags) {
            case .element(let element):
                deliver(element)
            case .end:
                let operation = lock.withLock { () -> Operation? in
                    if outcome == nil { outcome = .some(nil) }
                    return current
                }
                if more, let operation { executor.requestCancel(operation) }
                if !more {
                    finishRequest()
                    end(nil)
                }
                return
            }
        }
        guard !more else { return }
        // The request's final completion. Decide under the lock, together with clearing
        // `current`, so a consumer re-arming a paused stream cannot interleave.
        let next = lock.withLock { () -> AfterFinal in
            current?.onEach = nil  // breaks the record -> closure -> self cycle
            current = nil
            if terminated || outcome != nil { return .end(nil) }
            if paused && (result >= 0 || result == -ECANCELED || result == -ENOBUFS) {
                // Our own pause: wait for the consumer to take half (`next` re-arms), unless it
                // already has.
                if bufferedWeight > bufferLimit / 2 { return .wait }
                paused = false
                return .rearm
            }
            if result < 0 && result != -ECANCELED {
                switch classify(-result) {
                case .retry:
                    paused = false  // the retry's timer re-arms, not the consumer
                    retryDelay =
                        retryDelay == .zero ? Self.firstRetryDelay : min(retryDelay * 2, Self.longestRetryDelay)
                    return .retry(Errno(rawValue: -result), retryDelay)
                case .finish: return .end(nil)
                case .fail: break
                }
            }
            // The kernel ended it on its own (CQ pressure, or its buffers ran out after it used
            // some): again. ENOBUFS with nothing delivered: no buffers to be had, end with it.
            if result >= 0 || result == -ENOBUFS && deliveredByCurrent > 0 { return .rearm }
            return .end(result == -ECANCELED ? nil : Errno(rawValue: -result))
        }
        switch next {
        case .end(let error): end(error)
        case .rearm: arm()
        case .wait: break
        case .retry(let error, let delay):
            onError?(error)
            rearm(after: delay)
        }
    }

    /// Arms the request again after `delay`, on a kernel timeout. Shutdown cancels the timer
    /// (`ECANCELED`), which ends the stream the way shutdown ends an armed request.
    private func rearm(after delay: Duration) {
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(delay))
        let timer = Operation(.timeout(timespec))
        timer.endsAtShutdown = true
        timer.onEach = { [self] result, _ in
            timer.onEach = nil  // breaks the record -> closure -> record cycle
            timespec.deallocate()  // its only completion has arrived
            if result == -ECANCELED || result == -ESHUTDOWN { end(nil) } else { arm() }
        }
        if !executor.enqueue(timer) {
            timer.onEach = nil
            timespec.deallocate()
            end(Errno(rawValue: ESHUTDOWN))
        }
    }

    /// Hands `element` to a waiting consumer, buffers it, or discards it when nobody will take it;
    /// pauses the request when the buffer is full.
    private func deliver(_ element: Element) {
        var pause: Operation?
        let outcome = lock.withLock { () -> UnsafeContinuation<Element?, any Error>?? in
            if terminated { return .none }
            deliveredByCurrent += 1
            retryDelay = .zero
            if !waiters.isEmpty { return .some(waiters.removeFirst()) }
            buffered.append(element)
            bufferedWeight += weight(element)
            if bufferedWeight >= bufferLimit && !paused, let current {
                paused = true
                pause = current
            }
            return .some(nil)
        }
        switch outcome {
        case .none: discard(element)
        case .some(let waiter?): waiter.resume(returning: element)
        case .some(nil): break
        }
        if let pause { executor.requestCancel(pause) }
    }

    private func finishRequest() {
        lock.withLock {
            current?.onEach = nil  // breaks the record -> closure -> self cycle
            current = nil
        }
    }

    /// The request is over for good: record the outcome, wake waiters if nothing is buffered,
    /// and run `onEnd` once (no request is in flight any more).
    private func end(_ error: (any Error)?) {
        let (woken, release) = lock.withLock { () -> ([UnsafeContinuation<Element?, any Error>], Bool) in
            if outcome == nil { outcome = .some(error) }
            var woken: [UnsafeContinuation<Element?, any Error>] = []
            if buffered.isEmpty {
                woken = waiters
                waiters.removeAll()
            }
            let release = current == nil && !ended
            if release { ended = true }
            return (woken, release)
        }
        if release { onEnd() }
        guard !woken.isEmpty else { return }
        // Report an error to the first waiter; the others see the end.
        let first = lock.withLock { () -> (any Error)? in
            let error = outcome ?? nil
            outcome = .some(nil)
            return error
        }
        for (index, waiter) in woken.enumerated() {
            if index == 0, let first { waiter.resume(throwing: first) } else { waiter.resume(returning: nil) }
        }
    }

    /// Runs `onEnd` on the loop thread when the consumer leaves a paused stream (nothing in
    /// flight): a NOP's completion carries it there. After shutdown it runs here.
    private func finishOnLoop() {
        let operation = Operation(.nop())
        operation.onEach = { [self] _, _ in
            operation.onEach = nil
            end(nil)
        }
        if !executor.enqueue(operation) {
            operation.onEach = nil
            end(nil)
        }
    }
}
