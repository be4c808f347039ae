import Glibc
import Ring
public import SystemPackage

/// Buffers registered with an executor's ring (`IORING_REGISTER_BUFFERS`): the kernel pins them
/// once, so `READ_FIXED` / `WRITE_FIXED` skip the per-request page pinning. Check a buffer out
/// with `take()`, use it with the executor's fixed-buffer `read`/`write`, give it back with
/// `give(_:)`. io_uring only; one table per executor. The memory lives as long as this object.
public final class FixedBuffers: @unchecked Sendable {
    /// One registered buffer: its table index and its memory.
    public struct Buffer: @unchecked Sendable {
        public let index: Int
        public let bytes: UnsafeMutableRawBufferPointer
    }

    public let count: Int
    public let size: Int
    private let memory: UnsafeMutableRawBufferPointer
    private let lock = Lock()
    private var free: [Int]

    init(count: Int, size: Int) {
        self.count = count
        self.size = size
        memory = .allocate(byteCount: count * size, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0)
        free = Array((0..<count).reversed())
    }

    deinit { memory.deallocate() }

    func buffer(_ index: Int) -> Buffer {
        Buffer(index: index, bytes: UnsafeMutableRawBufferPointer(rebasing: memory[index * size..<(index + 1) * size]))
    }

    /// A free buffer, or nil when all are checked out.
    public func take() -> Buffer? {
        lock.withLock { free.popLast() }.map(buffer)
    }

    /// Returns a buffer taken from this pool (only after the operations using it returned).
    public func give(_ buffer: Buffer) {
        precondition(buffer.index >= 0 && buffer.index < count, "not a buffer of this pool")
        lock.withLock { free.append(buffer.index) }
    }
}

extension RingExecutor {
    /// Registers `count` buffers of `size` bytes (page-aligned) with this executor's ring.
    /// Errors: `EBUSY` if the executor already has a table, `ENOMEM` over `RLIMIT_MEMLOCK`
    /// (without `CAP_IPC_LOCK`), `EngineError.unsupported` on the aio engines.
    public func registerFixedBuffers(count: Int, size: Int) async throws -> FixedBuffers {
        guard count > 0, count <= 16384, size > 0 else { throw Errno.invalidArgument }
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "fixed buffers", engine: engineSelection.engine)
        }
        let pool = FixedBuffers(count: count, size: size)
        try await run {
            let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: count)
            defer { vectors.deallocate() }
            for index in 0..<count {
                let bytes = pool.buffer(index).bytes
                vectors[index] = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
            }
            try self.withRing { ring throws(Errno) in try ring.registerBuffers(UnsafeBufferPointer(vectors)) }
        }
        return pool
    }

    /// `READ_FIXED` into `buffer` (its first `count` bytes, default all) at `offset`.
    public func read(_ fd: FileDescriptor, into buffer: FixedBuffers.Buffer, count: Int? = nil, offset: UInt64? = nil) async throws -> Int {
        let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[..<min(count ?? buffer.bytes.count, buffer.bytes.count)])
        return try await perform(
            .readFixed(fd, into: bytes, offset: try position(offset), bufferIndex: UInt16(buffer.index)))
    }

    /// `WRITE_FIXED` of the first `count` bytes of `buffer` at `offset`.
    public func write(_ fd: FileDescriptor, from buffer: FixedBuffers.Buffer, count: Int, offset: UInt64? = nil) async throws -> Int {
        let bytes = UnsafeRawBufferPointer(rebasing: buffer.bytes[..<min(count, buffer.bytes.count)])
        return try await perform(
            .writeFixed(fd, from: bytes, offset: try position(offset), bufferIndex: UInt16(buffer.index)))
    }
}
