import Glibc
import Ring
public import SystemPackage

/// A provided-buffer ring that many `messages(_:pool:bufferLimit:)` streams of one executor
/// receive into, instead of a ring per stream: a server's receive memory is the pool's size
/// (`bufferCount × bufferSize`), not that times its connections.
///
/// Each completion's bytes are copied out of the pool at once and the buffer goes straight back
/// to the kernel, so a slow consumer holds copies, never pool buffers. When a burst takes every
/// buffer, the streams whose receive found none wait a little (10 ms, doubling to 1 s while it
/// lasts) and receive again; their data waits in the socket meanwhile, in order.
///
/// The ring stays registered while the pool or any stream using it is alive, and is
/// unregistered on the executor's loop thread after the last of them is gone. Linux 6.0+
/// (multishot receive into a ring); on older kernels the pool registers nothing and each stream
/// receives into one buffer of `bufferSize` bytes of its own, as `messages(_:bufferSize:)` does.
public final class ReceiveBufferPool: Sendable {
    /// The size of each buffer: the most one receive delivers before Linux 6.10; from 6.10 a
    /// receive is a bundle of as many buffers as there are bytes waiting.
    public let bufferSize: Int
    /// How many buffers the kernel can fill before the streams consume them.
    public let bufferCount: Int
    let executor: RingExecutor
    /// The registered ring, touched only on the loop thread; nil before Linux 6.0.
    let buffers: ProvidedBuffers?
    let group: UInt16

    init(executor: RingExecutor, buffers: ProvidedBuffers?, group: UInt16, bufferSize: Int, bufferCount: Int) {
        self.executor = executor
        self.buffers = buffers
        self.group = group
        self.bufferSize = bufferSize
        self.bufferCount = bufferCount
    }

    deinit {
        // No stream holds the pool any more, so no request can select from its ring: unregister
        // it where the ring's single issuer lives.
        guard let buffers else { return }
        executor.onLoopThread { buffers.release() }
    }
}

extension RingExecutor {
    /// A pool of `bufferCount` buffers of `bufferSize` bytes for `messages(_:pool:bufferLimit:)`
    /// streams to share (registered under a group id no other stream of this executor owns).
    /// `EINVAL` for a size of 0 or above 4 GiB or a count outside 1...32768 (rounded up to a
    /// power of two); `EBUSY` when every group id is taken; `ESHUTDOWN` after shutdown;
    /// `EngineError.unsupported` on the aio engines.
    public nonisolated(nonsending) func makeReceiveBufferPool(bufferSize: Int = 16384, bufferCount: Int = 256)
        async throws -> ReceiveBufferPool
    {
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "multishot receive", engine: engineSelection.engine)
        }
        guard bufferSize > 0, bufferSize <= Int(UInt32.max), bufferCount > 0, bufferCount <= 32768 else {
            throw Errno.invalidArgument
        }
        return try await run { () throws -> ReceiveBufferPool in
            try self.withRing { _ in }  // ESHUTDOWN after shutdown
            guard let uring = self.uringEngine, uring.supportsMultishotReceive else {
                return ReceiveBufferPool(
                    executor: self, buffers: nil, group: 0, bufferSize: bufferSize, bufferCount: bufferCount)
            }
            let (group, buffers) = try self.registerProvidedBuffers(count: bufferCount, size: bufferSize)
            return ReceiveBufferPool(
                executor: self, buffers: buffers, group: group, bufferSize: bufferSize, bufferCount: bufferCount)
        }
    }

    /// Receives from `fd` into `pool`'s shared buffers with one multishot request: the stream
    /// of `messages(_:bufferSize:bufferCount:bufferLimit:)` (each element one receive's bytes,
    /// copied out; it ends when the peer closes, with an `Errno` on errors, and pauses once
    /// `bufferLimit` elements wait), except that the buffers are the pool's. A receive that
    /// finds the pool empty is re-armed after a short wait instead of ending the stream.
    /// `EINVAL` for a pool of another executor.
    public nonisolated(nonsending) func messages(
        _ fd: FileDescriptor, pool: ReceiveBufferPool, bufferLimit: Int = 64
    ) async throws -> AsyncThrowingStream<[UInt8], any Error> {
        guard pool.executor === self else { throw Errno.invalidArgument }
        guard let buffers = pool.buffers else {
            // Before Linux 6.0: a single-shot receive into a buffer the stream owns.
            return try await messages(fd, bufferSize: pool.bufferSize, bufferCount: 1, bufferLimit: bufferLimit)
        }
        let group = pool.group
        return try await run { () throws -> AsyncThrowingStream<[UInt8], any Error> in
            try self.withRing { _ in }  // ESHUTDOWN after shutdown
            return self.receiveStream(
                fd, group: group, buffers: buffers, bufferLimit: bufferLimit,
                // Holds the pool (and so its registration) until this stream's last completion.
                onEnd: { withExtendedLifetime(pool) {} },
                // Other streams took every buffer: theirs come back as their completions are
                // copied out, so wait and receive again.
                classify: { $0 == ENOBUFS ? .retry : .fail })
        }
    }

    /// Runs `body` on the loop thread (at once when called there), or on the calling thread once
    /// the loop has exited. For cleanup of loop-thread state from a deinit.
    func onLoopThread(_ body: @escaping @Sendable () -> Void) {
        if isOnLoopThread {
            body()
            return
        }
        let operation = Operation(.nop())
        operation.onEach = { _, _ in
            operation.onEach = nil  // breaks the record -> closure -> record cycle
            body()
        }
        if !enqueue(operation) {
            operation.onEach = nil
            body()
        }
    }
}
