import Glibc
public import Ring
public import SystemPackage

// File operations. Every call suspends the task until the kernel is done with the memory it was
// given (buffers, paths, iovec arrays): a borrowed buffer is safe to reuse or free as soon as the
// call returns, whether it succeeded, failed or was cancelled. Errors: `Errno` from the kernel,
// `CancellationError` when cancellation won, `EngineError.unsupported` when the executor's
// engine cannot do the operation (only io_uring can open, stat, rename, ...).

extension RingExecutor {
    /// `IORING_OP_NOP` through the engine (a round trip with no I/O).
    public nonisolated(nonsending) func nop() async throws {
        _ = try await perform(.nop())
    }

    // MARK: Open and close

    /// Opens `path` (relative to `directory`, default the working directory) like `openat(2)`.
    public nonisolated(nonsending) func open(
        _ path: FilePath, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions = [],
        permissions: FilePermissions? = nil, relativeTo directory: FileDescriptor? = nil
    ) async throws -> FileDescriptor {
        let flags = mode.rawValue | options.rawValue | O_CLOEXEC
        let path = try OwnedPath(path)
        defer { path.free() }
        let entry = SubmissionEntry.openat(
            directory: directory ?? FileDescriptor(rawValue: AT_FDCWD), path: path.pointer, flags: flags,
            mode: permissions?.rawValue ?? 0o644)
        return FileDescriptor(rawValue: Int32(try await perform(entry)))
    }

    /// Opens `path` with `openat2(2)`'s extended controls (`RESOLVE_*`).
    public nonisolated(nonsending) func open(
        _ path: FilePath, how: OpenHow, relativeTo directory: FileDescriptor? = nil
    ) async throws
        -> FileDescriptor
    {
        let path = try OwnedPath(path)
        defer { path.free() }
        let howPointer = UnsafeMutablePointer<OpenHow>.allocate(capacity: 1)
        howPointer.initialize(to: how)
        defer { howPointer.deallocate() }
        let entry = SubmissionEntry.openat2(
            directory: directory ?? FileDescriptor(rawValue: AT_FDCWD), path: path.pointer, how: howPointer)
        return FileDescriptor(rawValue: Int32(try await perform(entry)))
    }

    /// Closes `fd` through the engine (`EBADF` if it is not open).
    ///
    /// Operations still pending on `fd` through this executor (a `receive` waiting for data, a
    /// `poll`, an `accept`) are cancelled first, so a connection really closes: a pending request
    /// holds the open file, and the peer would not see end-of-file while it waits. Each of those
    /// operations ends with `Errno.canceled` (`ECANCELED`), or with its real result if it
    /// completed first; `CancellationError` stays reserved for a task that was itself cancelled.
    /// Their callers resume only after the kernel is done with their buffers, as always.
    ///
    /// Closing is cleanup, so it always happens: in a cancelled task too (it does not throw
    /// `CancellationError`), inside `withTimeout` without being bounded by it, after shutdown
    /// and on the aio engines with the `close(2)` system call.
    ///
    /// On Linux 5.19+ the cancel and the close go to the kernel together, as one linked pair
    /// (one round trip); before, the close follows the cancel's completion.
    public nonisolated(nonsending) func close(_ fd: FileDescriptor) async throws {
        if let uring = uringEngine {
            let result: Int32
            // Cancelling by descriptor came with CANCEL_ANY, in 5.19. The pair needs two entries
            // of the submission queue at once, which an executor of 2 entries does not have
            // (one is kept free): it would be refused with EINVAL and nothing closed.
            if uring.canCancelAny && uring.submissionCapacity >= 2 {
                result = await cancelPendingAndClose(fd)
            } else {
                await cancelPending(on: fd)
                result = await submitIgnoringCancellation(.close(fd))
            }
            if result >= 0 { return }
            if result != -ESHUTDOWN { throw Errno(rawValue: -result) }
        }
        // Shut down, or an aio engine (their kernels have no close request).
        if Glibc.close(fd.rawValue) != 0 { throw Errno(rawValue: errno) }
    }

    // MARK: Read and write

    /// The kernel offset for `offset`: nil is the file position (io_uring's -1); explicit
    /// offsets must fit in `Int64` (`UInt64.max` would silently mean the file position).
    func position(_ offset: UInt64?) throws(Errno) -> UInt64 {
        guard let offset else { return SubmissionEntry.currentPosition }
        guard offset <= UInt64(Int64.max) else { throw .invalidArgument }
        return offset
    }

    /// Reads into `buffer` at `offset`, or at the file position when `offset` is nil. Returns the
    /// bytes read (0 at end of file). Offsets above `Int64.max` throw `EINVAL` (the kernel would
    /// take `UInt64.max` for "the file position"). Only io_uring reads or writes at the file
    /// position: libaio and POSIX aio throw `EngineError.unsupported` naming "read at the file
    /// position" for `offset: nil` (the same for every read and write below).
    public nonisolated(nonsending) func read(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64? = nil
    )
        async throws -> Int
    {
        try await perform(.read(fd, into: buffer, offset: try position(offset)))
    }

    /// Reads up to `count` bytes into a new array (an owned buffer: nothing to keep alive).
    public nonisolated(nonsending) func read(_ fd: FileDescriptor, upTo count: Int, offset: UInt64? = nil) async throws
        -> [UInt8]
    {
        guard count >= 0 else { throw Errno.invalidArgument }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        defer { storage.deallocate() }  // after the completion: the kernel is done with it
        let read = try await self.read(
            fd, into: UnsafeMutableRawBufferPointer(rebasing: storage[..<count]), offset: offset)
        return Array(storage[..<read])
    }

    /// Writes `buffer` at `offset`, or at the file position when `offset` is nil. Returns the
    /// bytes written (possibly fewer than asked).
    public nonisolated(nonsending) func write(
        _ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: UInt64? = nil
    ) async throws
        -> Int
    {
        try await perform(.write(fd, from: buffer, offset: try position(offset)))
    }

    /// Writes `bytes` (copied into storage the executor owns until the completion).
    public nonisolated(nonsending) func write(_ fd: FileDescriptor, bytes: [UInt8], offset: UInt64? = nil) async throws
        -> Int
    {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { storage.deallocate() }
        storage.copyBytes(from: bytes)
        return try await write(fd, from: UnsafeRawBufferPointer(rebasing: storage[..<bytes.count]), offset: offset)
    }

    /// Scatter read into `buffers` in order (`preadv2(2)`). Returns the total bytes read.
    public nonisolated(nonsending) func read(
        _ fd: FileDescriptor, into buffers: [UnsafeMutableRawBufferPointer], offset: UInt64? = nil
    )
        async throws -> Int
    {
        let vectors = IOVectors(buffers.map { ($0.baseAddress, $0.count) })
        defer { vectors.free() }
        return try await perform(.readv(fd, vectors.buffer, offset: try position(offset)))
    }

    /// Gather write from `buffers` in order (`pwritev2(2)`). Returns the total bytes written.
    public nonisolated(nonsending) func write(
        _ fd: FileDescriptor, from buffers: [UnsafeRawBufferPointer], offset: UInt64? = nil
    ) async throws
        -> Int
    {
        let vectors = IOVectors(buffers.map { (UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) })
        defer { vectors.free() }
        return try await perform(.writev(fd, vectors.buffer, offset: try position(offset)))
    }

    // MARK: Durability and size

    /// `fsync(2)`, or `fdatasync(2)` when `dataOnly`.
    public nonisolated(nonsending) func fsync(_ fd: FileDescriptor, dataOnly: Bool = false) async throws {
        _ = try await perform(.fsync(fd, flags: dataOnly ? .dataSync : []))
    }

    /// `fallocate(2)`: reserves (or with `mode`, punches, zeroes, ...) `length` bytes at `offset`.
    public nonisolated(nonsending) func fallocate(_ fd: FileDescriptor, mode: Int32 = 0, offset: UInt64, length: UInt64)
        async throws
    {
        _ = try await perform(.fallocate(fd, mode: mode, offset: offset, length: length))
    }

    /// `ftruncate(2)` (io_uring `FTRUNCATE`, Linux 6.9+).
    public nonisolated(nonsending) func truncate(_ fd: FileDescriptor, length: UInt64) async throws {
        _ = try await perform(.ftruncate(fd, length: length))
    }

    // MARK: Names

    /// `statx(2)` on `path` (or on `directory` itself with an empty path and `AT_EMPTY_PATH`).
    public nonisolated(nonsending) func status(
        of path: FilePath, relativeTo directory: FileDescriptor? = nil, flags: Int32 = 0,
        mask: UInt32 = FileStatus.basicMask
    ) async throws -> FileStatus {
        let path = try OwnedPath(path)
        defer { path.free() }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: FileStatus.byteCount, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: FileStatus.byteCount)
        _ = try await perform(
            .statx(
                directory: directory ?? FileDescriptor(rawValue: AT_FDCWD), path: path.pointer, flags: flags,
                mask: mask, into: buffer))
        return FileStatus(UnsafeRawBufferPointer(start: buffer, count: FileStatus.byteCount))
    }

    /// `statx(2)` on an open descriptor.
    public nonisolated(nonsending) func status(of fd: FileDescriptor) async throws -> FileStatus {
        try await status(of: "", relativeTo: fd, flags: 0x1000)  // AT_EMPTY_PATH (hidden behind _GNU_SOURCE)
    }

    /// `renameat2(2)`.
    public nonisolated(nonsending) func rename(_ from: FilePath, to: FilePath, flags: UInt32 = 0) async throws {
        let old = try OwnedPath(from)
        defer { old.free() }
        let new = try OwnedPath(to)
        defer { new.free() }
        _ = try await perform(.renameat(old.pointer, new.pointer, flags: flags))
    }

    /// `unlinkat(2)`: removes a file, or an empty directory when `directory` is true.
    public nonisolated(nonsending) func remove(_ path: FilePath, directory: Bool = false) async throws {
        let path = try OwnedPath(path)
        defer { path.free() }
        _ = try await perform(.unlinkat(path: path.pointer, flags: directory ? AT_REMOVEDIR : 0))
    }

    /// `mkdirat(2)`.
    public nonisolated(nonsending) func makeDirectory(
        _ path: FilePath, permissions: FilePermissions = [.ownerReadWriteExecute, .groupReadExecute, .otherReadExecute]
    ) async throws {
        let path = try OwnedPath(path)
        defer { path.free() }
        _ = try await perform(.mkdirat(path: path.pointer, mode: permissions.rawValue))
    }

    /// `splice(2)`: moves up to `length` bytes between two descriptors, one of them a pipe
    /// (offsets nil for pipes and for the file position). Returns the bytes moved.
    public nonisolated(nonsending) func splice(
        from input: FileDescriptor, offset inputOffset: UInt64? = nil, to output: FileDescriptor,
        offset outputOffset: UInt64? = nil,
        length: Int
    ) async throws -> Int {
        try await perform(
            .splice(
                from: input, offset: try position(inputOffset), to: output, offset: try position(outputOffset),
                length: UInt32(clamping: length)))
    }

    // MARK: Poll

    /// Waits until `fd` is ready for `events` (one-shot `poll`); returns the ready events.
    public nonisolated(nonsending) func poll(_ fd: FileDescriptor, for events: PollEvents) async throws -> PollEvents {
        let result = try await perform(.pollAdd(fd, events: events))
        // libaio reports a cancelled poll as "no events" rather than ECANCELED.
        if result == 0 && Task.isCancelled { throw CancellationError() }
        return PollEvents(rawValue: UInt32(truncatingIfNeeded: result))
    }
}

/// A path copied into memory the caller frees after the operation's completion.
struct OwnedPath {
    let pointer: UnsafeMutablePointer<CChar>

    init(_ path: FilePath) throws(Errno) {
        let copied: UnsafeMutablePointer<CChar>? = path.withPlatformString { source in
            let length = strlen(source)
            guard length < Int(PATH_MAX) else { return nil }
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: length + 1)
            copy.initialize(from: source, count: length + 1)
            return copy
        }
        guard let copied else { throw .fileNameTooLong }
        pointer = copied
    }

    func free() { pointer.deallocate() }
}

/// An iovec array the caller frees after the operation's completion.
struct IOVectors {
    let buffer: UnsafeBufferPointer<iovec>

    init(_ parts: [(UnsafeMutableRawPointer?, Int)]) {
        let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: max(parts.count, 1))
        for (index, part) in parts.enumerated() {
            vectors[index] = iovec(iov_base: part.0, iov_len: part.1)
        }
        buffer = UnsafeBufferPointer(rebasing: vectors[..<parts.count])
    }

    func free() { UnsafeMutableBufferPointer(mutating: buffer).deallocate() }
}

/// The fields of `struct statx` (linux/stat.h) most callers need, decoded from the kernel's
/// 256-byte reply. Fields outside the returned `mask` are zero.
///
/// Kernel ABI: `include/uapi/linux/stat.h`, layout as of Linux 6.18 (`statx` since 4.11; io_uring's
/// `STATX` since 5.6).
public struct FileStatus: Sendable, Equatable {
    /// `STATX_*` bits the kernel filled.
    public var mask: UInt32
    /// `stx_blksize`: the preferred I/O block size.
    public var blockSize: UInt32
    /// `stx_nlink`: the number of hard links.
    public var linkCount: UInt32
    /// `stx_uid`: the owner's user id.
    public var userID: UInt32
    /// `stx_gid`: the owner's group id.
    public var groupID: UInt32
    /// File type and permission bits (`S_IF*` | mode).
    public var mode: UInt16
    /// `stx_ino`: the inode number.
    public var inode: UInt64
    /// `stx_size`: the size in bytes.
    public var size: UInt64
    /// 512-byte blocks allocated.
    public var blocks: UInt64
    /// Modification time (seconds, nanoseconds since the epoch).
    public var modificationTime: KernelTimespec

    /// `STATX_BASIC_STATS`.
    public static let basicMask: UInt32 = 0x7ff
    /// `sizeof(struct statx)`.
    static let byteCount = 256

    init(_ raw: UnsafeRawBufferPointer) {
        mask = raw.load(fromByteOffset: 0, as: UInt32.self)
        blockSize = raw.load(fromByteOffset: 4, as: UInt32.self)
        linkCount = raw.load(fromByteOffset: 16, as: UInt32.self)
        userID = raw.load(fromByteOffset: 20, as: UInt32.self)
        groupID = raw.load(fromByteOffset: 24, as: UInt32.self)
        mode = raw.load(fromByteOffset: 28, as: UInt16.self)
        inode = raw.load(fromByteOffset: 32, as: UInt64.self)
        size = raw.load(fromByteOffset: 40, as: UInt64.self)
        blocks = raw.load(fromByteOffset: 48, as: UInt64.self)
        modificationTime = KernelTimespec(
            seconds: raw.load(fromByteOffset: 112, as: Int64.self),
            nanoseconds: Int64(raw.load(fromByteOffset: 120, as: UInt32.self)))
    }

    /// Whether this is a directory.
    public var isDirectory: Bool { mode & 0o170000 == 0o040000 }
    /// Whether this is a regular file.
    public var isRegularFile: Bool { mode & 0o170000 == 0o100000 }
}
