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
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path), !bytes.contains(0) else { throw .invalidArgument }
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

// Sockets (io_uring only). Memory handed to the kernel (addresses, buffers) stays valid until
// each operation's completion, also when the task is cancelled.
extension RingExecutor {
    /// `socket(2)` (close-on-exec).
    public func socket(domain: Int32 = AF_INET, type: Int32 = Int32(SOCK_STREAM.rawValue), protocol proto: Int32 = 0) async throws -> FileDescriptor {
        FileDescriptor(rawValue: Int32(try await perform(.socket(domain: domain, type: type | Int32(SOCK_CLOEXEC.rawValue), protocol: proto))))
    }

    /// `bind(2)` (io_uring `BIND`, Linux 6.11+).
    public func bind(_ fd: FileDescriptor, to address: SocketAddress) async throws {
        let memory = address.copied()
        defer { memory.deallocate() }
        _ = try await perform(.bind(fd, address: memory, length: address.length))
    }

    /// `listen(2)` (io_uring `LISTEN`, Linux 6.11+).
    public func listen(_ fd: FileDescriptor, backlog: Int32 = 128) async throws {
        _ = try await perform(.listen(fd, backlog: backlog))
    }

    /// `connect(2)`.
    public func connect(_ fd: FileDescriptor, to address: SocketAddress) async throws {
        let memory = address.copied()
        defer { memory.deallocate() }
        _ = try await perform(.connect(fd, address: memory, length: address.length))
    }

    /// Accepts one connection (close-on-exec).
    public func accept(_ fd: FileDescriptor) async throws -> FileDescriptor {
        FileDescriptor(rawValue: Int32(try await perform(.accept(fd, flags: Int32(SOCK_CLOEXEC.rawValue)))))
    }

    /// Accepts connections with one multishot request for as long as the stream is iterated.
    /// Ending the iteration (or cancelling its task) cancels the request; the kernel's errors end
    /// the stream with an `Errno`. If the kernel ends the multishot on its own (e.g. under CQ
    /// pressure), the executor re-arms it. Connections accepted but not yet consumed when the
    /// stream ends are closed.
    public func connections(_ fd: FileDescriptor) -> AsyncThrowingStream<FileDescriptor, any Error> {
        multishotStream(
            "multishot accept", .accept(fd, flags: Int32(SOCK_CLOEXEC.rawValue), multishot: true),
            decode: { result, _ in .element(FileDescriptor(rawValue: result)) }, discard: { try? $0.close() })
    }

    /// Submits any multishot request (`.pollAdd(fd, events:, flags: .multishot)`,
    /// `.timeout(spec, flags: .multishot)`, `.accept(fd, multishot: true)`, ...) and yields each
    /// completion's raw result. Same lifetime rules as `connections(_:)`: ending the iteration
    /// cancels the request; a final error ends the stream with its `Errno`; a request the kernel
    /// ends by itself while the stream is still wanted is submitted again. Memory the entry
    /// points to must stay valid until the stream has ended.
    public func multishot(_ entry: SubmissionEntry) -> AsyncThrowingStream<Int32, any Error> {
        multishotStream("multishot", entry, decode: { result, _ in .element(result) }, discard: { _ in })
    }

    /// A stream fed by one multishot request; finishes at once with `unsupported` on the aio
    /// engines.
    private func multishotStream<Element: Sendable>(
        _ operation: String, _ entry: SubmissionEntry, decode: @escaping (Int32, UInt32) -> Multishot<Element>.Decoded,
        discard: @escaping (Element) -> Void
    ) -> AsyncThrowingStream<Element, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: Element.self)
        guard engineSelection.engine == .ioURing else {
            continuation.finish(throwing: EngineError.unsupported(operation: operation, engine: engineSelection.engine))
            return stream
        }
        Multishot(executor: self, continuation: continuation, entry: entry, decode: decode, discard: discard).start()
        return stream
    }

    /// Sends from `buffer`; returns the bytes sent. `MSG_NOSIGNAL` is always added.
    public func send(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, flags: Int32 = 0) async throws -> Int {
        try await perform(.send(fd, buffer, flags: flags | Int32(MSG_NOSIGNAL)))
    }

    /// Sends all of `bytes` (looping over short sends).
    public func send(_ fd: FileDescriptor, bytes: [UInt8]) async throws {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { storage.deallocate() }
        storage.copyBytes(from: bytes)
        var sent = 0
        while sent < bytes.count {
            sent += try await send(fd, from: UnsafeRawBufferPointer(rebasing: storage[sent..<bytes.count]))
        }
    }

    /// Receives into `buffer`; returns the bytes received (0: the peer closed).
    public func receive(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, flags: Int32 = 0) async throws -> Int {
        try await perform(.recv(fd, into: buffer, flags: flags))
    }

    /// Receives up to `count` bytes into a new array (empty: the peer closed).
    public func receive(_ fd: FileDescriptor, upTo count: Int) async throws -> [UInt8] {
        guard count > 0 else { throw Errno.invalidArgument }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { storage.deallocate() }
        let received = try await receive(fd, into: storage)
        return Array(storage[..<received])
    }

    /// Receives with one multishot request into a provided-buffer ring of `bufferCount` buffers
    /// of `bufferSize` bytes (registered for this stream, released when it ends). Each element
    /// is one receive's bytes, copied out so the kernel's buffer goes straight back to the ring.
    /// The stream ends when the peer closes; errors end it with an `Errno`. Linux 6.0+.
    public func messages(_ fd: FileDescriptor, bufferSize: Int = 16384, bufferCount: Int = 64) async throws
        -> AsyncThrowingStream<[UInt8], any Error>
    {
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "multishot receive", engine: engineSelection.engine)
        }
        // The buffer ring is registered (and later released) on the loop thread.
        return try await run { () throws -> AsyncThrowingStream<[UInt8], any Error> in
            let group = self.allocateBufferGroup()
            let buffers = try self.withRing { ring throws(Errno) in
                ProvidedBuffers(try BufferRing(ring: ring, group: group, count: bufferCount, bufferSize: bufferSize))
            }
            let (stream, continuation) = AsyncThrowingStream.makeStream(of: [UInt8].self)
            let multishot = Multishot<[UInt8]>(
                executor: self, continuation: continuation,
                entry: .recv(fd, bufferGroup: group, options: .multishot),
                decode: { result, flags in
                    if result == 0 { return .end }
                    return .element(buffers.take(Completion(userData: 0, result: result, flags: flags)))
                },
                discard: { _ in },
                onEnd: { buffers.release() })
            multishot.start()
            return stream
        }
    }

    /// `shutdown(2)` (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`).
    public func shutdown(_ fd: FileDescriptor, how: Int32 = Int32(SHUT_WR)) async throws {
        _ = try await perform(.shutdown(fd, how: how))
    }
}

/// A provided-buffer ring owned by one receive stream. Touched only on the loop thread.
final class ProvidedBuffers: @unchecked Sendable {
    private var ring: BufferRing?

    init(_ ring: consuming BufferRing) { self.ring = consume ring }

    /// Copies out the bytes a completion delivered and gives the buffer back to the kernel.
    func take(_ completion: Completion) -> [UInt8] {
        guard let id = completion.bufferID else { return [] }
        let bytes = ring!.buffer(id)
        let copy = Array(bytes[..<Int(completion.result)])
        ring!.recycle(id)
        return copy
    }

    /// Unregisters and frees the ring (after the last completion that could use it).
    func release() { ring = nil }
}

/// One multishot request feeding an `AsyncThrowingStream`, re-armed when the kernel ends it
/// while the stream is still wanted.
final class Multishot<Element: Sendable>: @unchecked Sendable {
    enum Decoded {
        case element(Element)
        case end
    }

    private let lock = Lock()
    private var current: Operation?
    private var terminated = false
    private let executor: RingExecutor
    private let continuation: AsyncThrowingStream<Element, any Error>.Continuation
    private let entry: SubmissionEntry
    private let decode: (Int32, UInt32) -> Decoded
    private let discard: (Element) -> Void
    private let onEnd: () -> Void

    init(
        executor: RingExecutor, continuation: AsyncThrowingStream<Element, any Error>.Continuation,
        entry: SubmissionEntry, decode: @escaping (Int32, UInt32) -> Decoded,
        discard: @escaping (Element) -> Void, onEnd: @escaping () -> Void = {}
    ) {
        self.executor = executor
        self.continuation = continuation
        self.entry = entry
        self.decode = decode
        self.discard = discard
        self.onEnd = onEnd
    }

    func start() {
        continuation.onTermination = { [self] _ in
            let operation = lock.withLock { () -> Operation? in
                terminated = true
                return current
            }
            if let operation { executor.requestCancel(operation) }
        }
        arm()
    }

    private func arm() {
        let operation = Operation(entry)
        operation.endsAtShutdown = true
        operation.onEach = { [self] result, flags in handle(result, flags) }
        let proceed = lock.withLock { () -> Bool in
            if terminated { return false }
            current = operation
            return true
        }
        guard proceed else { return end(nil) }
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
                if case .terminated = continuation.yield(element) { discard(element) }
            case .end:
                lock.withLock { terminated = true }
                if let operation = lock.withLock({ current }), more { executor.requestCancel(operation) }
                if !more { finishRequest() }
                return end(nil)
            }
        }
        guard !more else { return }
        finishRequest()
        let wanted = lock.withLock { !terminated }
        if wanted && (result >= 0 || result == -ENOBUFS) {
            arm()  // the kernel ended the multishot on its own: keep going
        } else if result < 0 && result != -ECANCELED {
            end(Errno(rawValue: -result))
        } else {
            end(nil)
        }
    }

    private func finishRequest() {
        lock.withLock {
            current?.onEach = nil  // breaks the record -> closure -> self cycle
            current = nil
        }
    }

    private func end(_ error: (any Error)?) {
        if lock.withLock({ current == nil }) { onEnd() }
        continuation.finish(throwing: error)
    }
}
