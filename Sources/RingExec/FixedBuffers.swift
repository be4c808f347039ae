import Glibc
import Ring
public import SystemPackage

/// Buffers registered with an executor's ring (`IORING_REGISTER_BUFFERS`): the kernel pins them
/// once, so `READ_FIXED` / `WRITE_FIXED` skip the per-request page pinning. Check a buffer out
/// with `take()`, use it with the executor's fixed-buffer `read`/`write`, give it back with
/// `give(_:)` (or just drop it). io_uring only; one table per executor.
///
/// Lifetimes: a `Buffer` is non-copyable (one owner; giving it back consumes it, so it cannot be
/// given twice) and keeps its pool alive, so its memory outlives every read or write it is used
/// for. When the pool itself goes (its last buffer and reference dropped), the executor's loop
/// unregisters the table before the memory is freed; after shutdown, when no request can use
/// it any more, the memory is freed at once.
public final class FixedBuffers: @unchecked Sendable {
    /// One registered buffer: its table index and its memory. Dropping it returns it to its pool.
    public struct Buffer: ~Copyable, @unchecked Sendable {
        /// The buffer's index in the kernel's registered-buffer table (`buf_index`).
        public let index: Int
        /// The buffer's memory; valid while this value is alive.
        public let bytes: UnsafeMutableRawBufferPointer
        /// Strong: the pool (and the registered memory) lives at least as long as this buffer.
        fileprivate let pool: FixedBuffers

        fileprivate init(pool: FixedBuffers, index: Int) {
            self.pool = pool
            self.index = index
            bytes = UnsafeMutableRawBufferPointer(rebasing: pool.memory[index * pool.size..<(index + 1) * pool.size])
        }

        deinit { pool.release(index) }
    }

    /// How many buffers the pool registered.
    public let count: Int
    /// The size of each buffer in bytes.
    public let size: Int
    fileprivate let memory: UnsafeMutableRawBufferPointer
    private let lock = Lock()
    private var free: [Int]
    /// Where the table is registered; set once by `registerFixedBuffers` before the pool is
    /// handed out.
    fileprivate var executor: RingExecutor?

    init(count: Int, size: Int) {
        self.count = count
        self.size = size
        memory = .allocate(byteCount: count * size, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0)
        free = Array((0..<count).reversed())
    }

    deinit {
        // No buffer is left (each keeps the pool alive), so no request of ours uses the memory;
        // but the ring still has it registered. Unregister on the loop thread, then free.
        guard let executor else { return memory.deallocate() }
        // The address travels as an integer: nothing else refers to this memory any more.
        let address = UInt(bitPattern: memory.baseAddress)
        executor.unregisterFixedBuffers { UnsafeMutableRawPointer(bitPattern: address)?.deallocate() }
    }

    /// The address of buffer `index` (registration only).
    fileprivate func region(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: memory[index * size..<(index + 1) * size])
    }

    /// A free buffer, or nil when all are checked out.
    public func take() -> Buffer? {
        guard let index = lock.withLock({ free.popLast() }) else { return nil }
        return Buffer(pool: self, index: index)
    }

    /// Buffers not checked out.
    public var available: Int { lock.withLock { free.count } }

    /// Returns a buffer taken from this pool (after the operations using it returned; the
    /// borrowing `read`/`write` calls make that so). A buffer of another pool goes back to its
    /// own pool and this throws `EINVAL`.
    public func give(_ buffer: consuming Buffer) throws(Errno) {
        guard buffer.pool === self else { throw .invalidArgument }  // its deinit returns it home
    }

    fileprivate func release(_ index: Int) {
        lock.withLock { free.append(index) }
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
                let bytes = pool.region(index)
                vectors[index] = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
            }
            try self.withRing { ring throws(Errno) in try ring.registerBuffers(UnsafeBufferPointer(vectors)) }
        }
        pool.executor = self  // registered: from now on its memory is freed only after unregistering
        return pool
    }

    /// `READ_FIXED` into `buffer` (its first `count` bytes, default all) at `offset`.
    public func read(
        _ fd: FileDescriptor, into buffer: borrowing FixedBuffers.Buffer, count: Int? = nil, offset: UInt64? = nil
    ) async throws -> Int {
        let bytes = UnsafeMutableRawBufferPointer(
            rebasing: buffer.bytes[..<min(count ?? buffer.bytes.count, buffer.bytes.count)])
        return try await perform(
            .readFixed(fd, into: bytes, offset: try position(offset), bufferIndex: UInt16(buffer.index)))
    }

    /// `WRITE_FIXED` of the first `count` bytes of `buffer` at `offset`.
    public func write(
        _ fd: FileDescriptor, from buffer: borrowing FixedBuffers.Buffer, count: Int, offset: UInt64? = nil
    ) async throws -> Int {
        let bytes = UnsafeRawBufferPointer(rebasing: buffer.bytes[..<min(count, buffer.bytes.count)])
        return try await perform(
            .writeFixed(fd, from: bytes, offset: try position(offset), bufferIndex: UInt16(buffer.index)))
    }
}

extension RingExecutor {
    /// Unregisters the fixed-buffer table on the loop thread, then runs `free` there. A NOP's
    /// completion carries the work to the loop (any thread may drop the last reference to a
    /// pool). After shutdown nothing can use the memory any more (no request is accepted), so
    /// `free` runs at once; the ring's close drops the pins.
    fileprivate func unregisterFixedBuffers(then free: @escaping @Sendable () -> Void) {
        let operation = Operation(.nop())
        operation.onEach = { _, _ in
            operation.onEach = nil  // breaks the record -> closure -> record cycle
            _ = try? self.withRing { ring throws(Errno) in try ring.unregisterBuffers() }
            free()
        }
        if !enqueue(operation) {
            operation.onEach = nil
            free()
        }
    }
}
