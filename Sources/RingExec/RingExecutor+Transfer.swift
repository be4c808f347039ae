import CSyscalls
import Glibc
import Ring
import Synchronization
public import SystemPackage

// Moving file contents without a user-space copy (splice through a pipe), and reading a whole
// small file as one linked chain (statx, open into a fixed-file slot, read, close). io_uring only:
// the aio engines throw `EngineError.unsupported`.

extension RingExecutor {
    // MARK: Splice through a pipe

    /// Sends up to `count` bytes of `file`, from `offset`, to `socket` without copying them
    /// through user space: the kernel splices file pages into a pipe and from the pipe into the
    /// socket (`IORING_OP_SPLICE`, Linux 5.7). Returns the bytes sent: `count`, or fewer when the
    /// file ends first. `file`'s position is not used or moved.
    ///
    /// Each call makes its own pipe (`pipe2(2)`, closed before returning): a pipe holds the bytes
    /// of one transfer in order, so a pipe shared by concurrent transfers would interleave them,
    /// and the two system calls are small beside the splices of any file worth sending this way.
    ///
    /// Cancellation returns only when the kernel is done with both descriptors (bytes already in
    /// the pipe are dropped: the peer has received a prefix of the range). Errors: the `Errno` of a
    /// splice (`EPIPE`/`ECONNRESET` when the peer went away, `EINVAL` for a file that cannot be
    /// spliced), `ESHUTDOWN` after shutdown, `EngineError.unsupported` on libaio and POSIX aio.
    public nonisolated(nonsending) func sendFile(
        _ file: FileDescriptor, offset: UInt64 = 0, count: Int, to socket: FileDescriptor
    )
        async throws -> Int
    {
        try await spliceThroughPipe(
            from: file, offset: offset, count: count, to: socket, offset: nil, operation: "sendFile")
    }

    /// Copies up to `count` bytes of `source` from `offset` to `target` at `targetOffset` through
    /// the ring (splice file → pipe → file, Linux 5.7). Returns the bytes copied: fewer than
    /// `count` when `source` ends first. Neither file's position is used or moved.
    ///
    /// Not `copy_file_range(2)`: that has no io_uring operation, and as a plain system call it
    /// would block the loop thread (and every task on it) for the whole copy, where the ring's
    /// splices run in the kernel's workers. Reflink-capable file systems do not get a reflink.
    /// Errors and cancellation as `sendFile`.
    public nonisolated(nonsending) func copy(
        from source: FileDescriptor, offset: UInt64 = 0, count: Int, to target: FileDescriptor,
        at targetOffset: UInt64 = 0
    ) async throws -> Int {
        try await spliceThroughPipe(
            from: source, offset: offset, count: count, to: target, offset: try position(targetOffset),
            operation: "copy")
    }

    /// Moves up to `count` bytes from `input` at `inputOffset` into a pipe and from the pipe into
    /// `output` (at `outputOffset`, or no offset for sockets and pipes). One linked pair of
    /// splices per pipe-full; a short first splice breaks the link (the kernel fails the rest of a
    /// chain after a short splice, io_uring/splice.c), and what it moved is drained on its own.
    private nonisolated(nonsending) func spliceThroughPipe(
        from input: FileDescriptor, offset inputOffset: UInt64, count: Int, to output: FileDescriptor,
        offset outputOffset: UInt64?, operation: String
    ) async throws -> Int {
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: operation, engine: engineSelection.engine)
        }
        guard count >= 0, inputOffset <= UInt64(Int64.max) - UInt64(count) else { throw Errno.invalidArgument }
        if isShutDown { throw Errno(rawValue: ESHUTDOWN) }
        if count == 0 { return 0 }
        var ends: [Int32] = [-1, -1]
        let made = cs_pipe_cloexec(&ends)
        guard made == 0 else { throw Errno(rawValue: -made) }
        let reader = FileDescriptor(rawValue: ends[0])
        let writer = FileDescriptor(rawValue: ends[1])
        // After every splice has completed: `perform` and `submitChain` return only then.
        defer {
            Glibc.close(reader.rawValue)
            Glibc.close(writer.rawValue)
        }
        let capacity = Int(fcntl(writer.rawValue, 1032))  // F_GETPIPE_SZ (hidden behind _GNU_SOURCE)
        let chunk = capacity > 0 ? capacity : 65536
        let noOffset = SubmissionEntry.currentPosition
        var moved = 0
        while moved < count {
            let length = UInt32(min(count - moved, chunk))
            let source = inputOffset + UInt64(moved)
            let target = outputOffset.map { $0 == noOffset ? noOffset : $0 + UInt64(moved) } ?? noOffset
            let results = try await submitChain([
                .splice(from: input, offset: source, to: writer, offset: noOffset, length: length).flags(.link),
                .splice(from: reader, offset: noOffset, to: output, offset: target, length: length),
            ])
            if results[0] < 0 { throw spliceError(results[0]) }
            let filled = Int(results[0])
            if filled == 0 { break }  // end of the input
            var drained = 0
            if results[1] >= 0 {
                drained = Int(results[1])
            } else if results[1] != -ECANCELED {
                throw spliceError(results[1])
            } else if Task.isCancelled {
                throw CancellationError()
            }
            while drained < filled {
                let target = outputOffset.map { $0 == noOffset ? noOffset : $0 + UInt64(moved + drained) } ?? noOffset
                let sent = try await perform(
                    .splice(
                        from: reader, offset: noOffset, to: output, offset: target, length: UInt32(filled - drained)))
                if sent == 0 { throw Errno.brokenPipe }  // the output accepts nothing more
                drained += sent
            }
            moved += filled
        }
        return moved
    }

    /// A failed splice's result as what `perform` would throw.
    private func spliceError(_ result: Int32) -> any Error {
        if (result == -ECANCELED || result == -EINTR) && Task.isCancelled { return CancellationError() }
        return Errno(rawValue: -result)
    }

    // MARK: Whole files

    /// Reads the whole of the regular file at `path` (relative to the working directory) if it
    /// holds at most `limit` bytes. On io_uring, where the kernel opens into fixed-file slots
    /// (Linux 5.15), this is one linked chain — `statx`, `openat` into a slot of a fixed-file table
    /// the executor registers on first use, `read` of up to `limit + 1` bytes from that slot,
    /// `close` of the slot — so one submission and one wake-up; elsewhere (an older kernel, a
    /// file table the caller registered through `withRing`, every slot busy) the same steps as
    /// separate operations. A buffer of `limit + 1` bytes is allocated for the call.
    ///
    /// Errors: `ENOENT`, `EACCES`, `EISDIR`... from the kernel; `EFBIG` (`Errno.fileTooLarge`)
    /// when the file holds more than `limit` bytes; `EINVAL` for a negative limit; `ESHUTDOWN`
    /// after shutdown; `EngineError.unsupported` on libaio and POSIX aio (they cannot open).
    /// Cancellation: returns only once the kernel is done with the buffer; a descriptor the
    /// chain had opened is closed before the slot is used again.
    public nonisolated(nonsending) func readFile(at path: FilePath, upTo limit: Int) async throws -> [UInt8] {
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "readFile", engine: engineSelection.engine)
        }
        guard limit >= 0, limit < Int(Int32.max) else { throw Errno.invalidArgument }
        // One byte more than the limit: a file that grew past it after its statx is noticed.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: limit + 1, alignment: 16)
        defer { buffer.deallocate() }  // after the chain's last completion
        let read = try await readWholeFile(path, into: buffer, limit: limit)
        return Array(buffer[..<read])
    }

    /// Reads the whole of the regular file at `path` into `buffer` and returns its size: the
    /// same chain and fallbacks as `readFile(at:upTo:)`, into memory the caller owns instead of
    /// a new array (no allocation, no copy: a server can read a file straight into the memory it
    /// sends from). `EFBIG` when the file holds more than `buffer.count` bytes, decided by its
    /// size when the call looked (a file that grows meanwhile is read as far as `buffer` holds).
    /// The same errors and cancellation rule otherwise: the call returns only once the kernel
    /// is done with `buffer`; after a failure its contents are unspecified.
    public nonisolated(nonsending) func readFile(at path: FilePath, into buffer: UnsafeMutableRawBufferPointer)
        async throws -> Int
    {
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "readFile", engine: engineSelection.engine)
        }
        guard buffer.count < Int(Int32.max) else { throw Errno.invalidArgument }
        return try await readWholeFile(path, into: buffer, limit: buffer.count)
    }

    /// Reads the file into `buffer`, which holds `limit` bytes, or `limit + 1` to notice a file
    /// that grew past `limit` after its statx; `EFBIG` past `limit`.
    private nonisolated(nonsending) func readWholeFile(
        _ path: FilePath, into buffer: UnsafeMutableRawBufferPointer, limit: Int
    ) async throws -> Int {
        // The chain is four entries at once: an executor with fewer free in its submission
        // queue would refuse it (EINVAL) without reading anything.
        if (uringEngine?.submissionCapacity ?? 0) >= 4, let slot = try await FixedSlots.take(for: self) {
            if let read = try await readFileChained(path, into: buffer, limit: limit, slot: slot) { return read }
        }
        return try await readFileInSteps(path, into: buffer, limit: limit)
    }

    /// The linked chain; nil when the kernel refused the fixed-slot open (then never tried again)
    /// or the read came up short of the file's size.
    private nonisolated(nonsending) func readFileChained(
        _ path: FilePath, into buffer: UnsafeMutableRawBufferPointer, limit: Int, slot: UInt32
    ) async throws -> Int? {
        let name = try OwnedPath(path)
        defer { name.free() }
        let status = UnsafeMutableRawPointer.allocate(byteCount: FileStatus.byteCount, alignment: 8)
        defer { status.deallocate() }
        status.initializeMemory(as: UInt8.self, repeating: 0, count: FileStatus.byteCount)
        let results: [Int32]
        do {
            // statx before the open: io_uring's statx takes a path, never a fixed file (EBADF,
            // io_uring/statx.c). The read is hard-linked to the close, so a short or failed read
            // still closes the slot; a failed statx or open cancels the rest (nothing to close).
            // No O_CLOEXEC: a slot is not in the descriptor table, and the kernel refuses the
            // flag with a slot (EINVAL, io_uring/openclose.c).
            results = try await submitChain([
                .statx(path: name.pointer, mask: FileStatus.basicMask, into: status).flags(.link),
                .openat(path: name.pointer, flags: O_RDONLY, destination: .fixedSlot(slot)).flags(.link),
                .read(FileDescriptor(rawValue: Int32(slot)), into: buffer, offset: 0).flags([.fixedFile, .hardLink]),
                .close(fixedSlot: slot),
            ])
        } catch {
            FixedSlots.give(slot, for: self)  // nothing ran
            throw error
        }
        if results[1] >= 0 && results[3] < 0 {
            // The chain was cancelled after the open: close the slot before anyone reuses it.
            // Unstructured, as this task is cancelled (its own submissions would not be made).
            Task(executorPreference: self) {
                _ = await self.submit(.close(fixedSlot: slot))
                FixedSlots.give(slot, for: self)
            }
        } else {
            FixedSlots.give(slot, for: self)
        }
        if results[0] < 0 { throw spliceError(results[0]) }
        if results[1] == -EINVAL {
            FixedSlots.disable(for: self)  // refused: never try the chain again on this executor
            return nil
        }
        if results[1] < 0 { throw spliceError(results[1]) }
        if results[2] < 0 { throw spliceError(results[2]) }
        let size = FileStatus(UnsafeRawBufferPointer(start: status, count: FileStatus.byteCount)).size
        let read = Int(results[2])
        if read > limit || size > UInt64(limit) { throw Errno.fileTooLarge }
        if UInt64(read) < size { return nil }  // a short read (a file growing, a signal): in steps
        return read
    }

    /// open, statx, reads until the end (or until `buffer` is full), close: separate operations.
    private nonisolated(nonsending) func readFileInSteps(
        _ path: FilePath, into buffer: UnsafeMutableRawBufferPointer, limit: Int
    ) async throws -> Int {
        let fd = try await open(path, .readOnly)
        do {
            let status = try await status(of: fd)
            if status.size > UInt64(limit) { throw Errno.fileTooLarge }
            var total = 0
            while total < buffer.count {
                let read = try await self.read(
                    fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[total...]), offset: UInt64(total))
                if read == 0 { break }
                total += read
            }
            if total > limit { throw Errno.fileTooLarge }
            try await close(fd)
            return total
        } catch {
            try? await close(fd)
            throw error
        }
    }
}

/// Per executor (by its never-reused `wakeID`): the fixed-file slots `readFile` registered and
/// which are free. A sparse table of `count` slots is registered on first use on the loop thread;
/// if the kernel or the caller's own table refuses it, `readFile` uses separate operations.
enum FixedSlots {
    static let count: UInt32 = 64

    enum State {
        case unavailable
        case free([UInt32])
    }

    /// Under a pthread mutex (`Lock`), which ThreadSanitizer sees; it does not see the standard
    /// library's `Mutex` on Linux and reported the loop threads of two executors racing here.
    static let states = LockedStates()

    final class LockedStates: @unchecked Sendable {
        private let lock = Lock()
        private var value: [UInt64: State] = [:]
        func withLock<T>(_ body: (inout [UInt64: State]) -> T) -> T { lock.withLock { body(&value) } }
    }

    /// A free slot, registering the table first if this executor has none yet; nil when slots
    /// cannot be had (then use separate operations).
    static func take(for executor: RingExecutor) async throws -> UInt32? {
        if let known = states.withLock({ pop(executor.wakeID, &$0) }) { return known }
        // First use: register a sparse table on the loop thread (ESHUTDOWN after shutdown). The
        // loop runs these bodies one at a time, so only the first registers.
        return try await executor.run { () throws -> UInt32? in
            try executor.withRing { (ring: inout Ring) -> UInt32? in
                states.withLock { states -> UInt32? in
                    if states[executor.wakeID] == nil {
                        // openat into a slot (file_index) is Linux 5.15; older kernels ignore
                        // the field and would open an ordinary descriptor nobody closes.
                        let kernel = ring.emulatedKernel ?? KernelVersion.running
                        let registered =
                            kernel.map { $0 >= KernelVersion(5, 15) } == true
                            && (try? ring.registerFiles(sparse: count)) != nil
                        states[executor.wakeID] = registered ? .free(Array(0..<count)) : .unavailable
                    }
                    return pop(executor.wakeID, &states) ?? nil
                }
            }
        }
    }

    /// nil: no table yet; .some(nil): no slot to be had; .some(slot).
    private static func pop(_ id: UInt64, _ states: inout [UInt64: State]) -> UInt32?? {
        switch states[id] {
        case nil: return nil
        case .unavailable?: return .some(nil)
        case .free(var slots)?:
            let slot = slots.popLast()
            states[id] = .free(slots)
            return .some(slot)
        }
    }

    static func give(_ slot: UInt32, for executor: RingExecutor) {
        states.withLock { states in
            if case .free(var slots)? = states[executor.wakeID] {
                slots.append(slot)
                states[executor.wakeID] = .free(slots)
            }
        }
    }

    static func disable(for executor: RingExecutor) {
        states.withLock { $0[executor.wakeID] = .unavailable }
    }
}
