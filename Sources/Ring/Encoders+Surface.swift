public import Glibc
public import SystemPackage

// Encoders for the rest of the kernel surface, grouped as io_uring_enter(2) groups them. Same
// rules as Encoders.swift: start from zero, fill what the opcode reads, and any pointer stored
// must stay valid until the completion (strings, structs and buffers alike).

// MARK: Files

extension SubmissionEntry {
    /// `IORING_OP_READ_FIXED`: read into registered buffer `bufferIndex`; `buffer` must lie inside it.
    @inlinable
    public static func readFixed(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64, bufferIndex: UInt16
    ) -> SubmissionEntry {
        var e = readWrite(.readFixed, fd, buffer.baseAddress, buffer.count, offset, [])
        e.bufIndex = bufferIndex
        return e
    }

    /// `IORING_OP_WRITE_FIXED`: write from registered buffer `bufferIndex`.
    @inlinable
    public static func writeFixed(
        _ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: UInt64, bufferIndex: UInt16
    ) -> SubmissionEntry {
        var e = readWrite(.writeFixed, fd, buffer.baseAddress, buffer.count, offset, [])
        e.bufIndex = bufferIndex
        return e
    }

    /// `IORING_OP_READV_FIXED`: vectored read whose iovecs lie in registered buffer `bufferIndex`.
    @inlinable
    public static func readvFixed(
        _ fd: FileDescriptor, _ iovecs: UnsafeBufferPointer<iovec>, offset: UInt64, bufferIndex: UInt16,
        flags: ReadWriteFlags = []
    ) -> SubmissionEntry {
        var e = readWrite(.readvFixed, fd, iovecs.baseAddress, iovecs.count, offset, flags)
        e.bufIndex = bufferIndex
        return e
    }

    /// `IORING_OP_WRITEV_FIXED`: vectored write whose iovecs lie in registered buffer `bufferIndex`.
    @inlinable
    public static func writevFixed(
        _ fd: FileDescriptor, _ iovecs: UnsafeBufferPointer<iovec>, offset: UInt64, bufferIndex: UInt16,
        flags: ReadWriteFlags = []
    ) -> SubmissionEntry {
        var e = readWrite(.writevFixed, fd, iovecs.baseAddress, iovecs.count, offset, flags)
        e.bufIndex = bufferIndex
        return e
    }

    /// `IORING_OP_READ` with `IOSQE_BUFFER_SELECT`: the kernel picks a buffer of `group`; the
    /// completion carries its id (`Completion.bufferID`). `length` 0 means the buffer's size.
    @inlinable
    public static func read(_ fd: FileDescriptor, bufferGroup group: UInt16, length: UInt32 = 0, offset: UInt64)
        -> SubmissionEntry
    {
        var e = make(.read, fd: fd.rawValue, len: length, off: offset)
        e.bufIndex = group
        e.flags = SQEFlags.bufferSelect.rawValue
        return e
    }

    /// `IORING_OP_READ_MULTISHOT`: keeps reading (pipes, sockets, eventfds) into buffers of `group`,
    /// one completion with `F_MORE` per read, until an error or the group runs dry (`-ENOBUFS`).
    @inlinable
    public static func readMultishot(
        _ fd: FileDescriptor, bufferGroup group: UInt16, length: UInt32 = 0, offset: UInt64 = 0
    ) -> SubmissionEntry {
        var e = make(.readMultishot, fd: fd.rawValue, len: length, off: offset)
        e.bufIndex = group
        e.flags = SQEFlags.bufferSelect.rawValue
        return e
    }

    /// `IORING_OP_SYNC_FILE_RANGE`: `sync_file_range(2)` over `offset..<offset+length`.
    @inlinable
    public static func syncFileRange(_ fd: FileDescriptor, offset: UInt64, length: UInt32, flags: UInt32 = 0)
        -> SubmissionEntry
    {
        var e = make(.syncFileRange, fd: fd.rawValue, len: length, off: offset)
        e.opFlags = flags
        return e
    }

    /// `IORING_OP_FALLOCATE`: `fallocate(2)` with `mode` (0 allocates and extends).
    @inlinable
    public static func fallocate(_ fd: FileDescriptor, mode: Int32 = 0, offset: UInt64, length: UInt64)
        -> SubmissionEntry
    {
        make(.fallocate, fd: fd.rawValue, addr: length, len: UInt32(bitPattern: mode), off: offset)
    }

    /// `IORING_OP_FADVISE`: `posix_fadvise(2)`.
    @inlinable
    public static func fadvise(_ fd: FileDescriptor, offset: UInt64, length: UInt32, advice: Int32) -> SubmissionEntry {
        var e = make(.fadvise, fd: fd.rawValue, len: length, off: offset)
        e.opFlags = UInt32(bitPattern: advice)
        return e
    }

    /// `IORING_OP_MADVISE`: `madvise(2)` on `memory`.
    @inlinable
    public static func madvise(_ memory: UnsafeMutableRawBufferPointer, advice: Int32) -> SubmissionEntry {
        var e = make(.madvise, addr: address(memory.baseAddress), len: UInt32(clamping: memory.count))
        e.opFlags = UInt32(bitPattern: advice)
        return e
    }

    /// `IORING_OP_FTRUNCATE`: `ftruncate(2)` to `length`.
    @inlinable
    public static func ftruncate(_ fd: FileDescriptor, length: UInt64) -> SubmissionEntry {
        make(.ftruncate, fd: fd.rawValue, off: length)
    }

    /// `IORING_OP_OPENAT`: `openat(2)` of `path` relative to `directory` (`AT_FDCWD` = -100).
    /// Result: the new fd, or with a fixed destination 0 / the allocated slot.
    @inlinable
    public static func openat(
        directory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), path: UnsafePointer<CChar>, flags: Int32,
        mode: mode_t = 0, destination: FileDestination = .descriptor
    ) -> SubmissionEntry {
        var e = make(.openat, fd: directory.rawValue, addr: address(path), len: mode)
        e.opFlags = UInt32(bitPattern: flags)
        e.fileIndex = destination.fileIndex
        return e
    }

    /// `IORING_OP_OPENAT2`: `openat2(2)` with an `OpenHow`.
    @inlinable
    public static func openat2(
        directory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), path: UnsafePointer<CChar>,
        how: UnsafePointer<OpenHow>, destination: FileDestination = .descriptor
    ) -> SubmissionEntry {
        var e = make(
            .openat2, fd: directory.rawValue, addr: address(path), len: UInt32(MemoryLayout<OpenHow>.size),
            off: address(how))
        e.fileIndex = destination.fileIndex
        return e
    }

    /// `IORING_OP_CLOSE`: closes `fd`.
    @inlinable
    public static func close(_ fd: FileDescriptor) -> SubmissionEntry {
        make(.close, fd: fd.rawValue)
    }

    /// `IORING_OP_CLOSE` of a fixed-file slot (`io_uring_prep_close_direct`).
    @inlinable
    public static func close(fixedSlot slot: UInt32) -> SubmissionEntry {
        var e = make(.close, fd: 0)
        e.fileIndex = slot &+ 1  // wrapping: the kernel subtracts 1
        return e
    }

    /// `IORING_OP_STATX`: `statx(2)` into `buffer` (a `struct statx`, 256 bytes).
    @inlinable
    public static func statx(
        directory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), path: UnsafePointer<CChar>, flags: Int32 = 0,
        mask: UInt32, into buffer: UnsafeMutableRawPointer
    ) -> SubmissionEntry {
        var e = make(.statx, fd: directory.rawValue, addr: address(path), len: mask, off: address(buffer))
        e.opFlags = UInt32(bitPattern: flags)
        return e
    }

    /// `IORING_OP_RENAMEAT`: `renameat2(2)`.
    @inlinable
    public static func renameat(
        from oldDirectory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), _ oldPath: UnsafePointer<CChar>,
        to newDirectory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), _ newPath: UnsafePointer<CChar>,
        flags: UInt32 = 0
    ) -> SubmissionEntry {
        var e = make(
            .renameat, fd: oldDirectory.rawValue, addr: address(oldPath),
            len: UInt32(bitPattern: newDirectory.rawValue),
            off: address(newPath))
        e.opFlags = flags
        return e
    }

    /// `IORING_OP_UNLINKAT`: `unlinkat(2)`; `AT_REMOVEDIR` in `flags` removes a directory.
    @inlinable
    public static func unlinkat(
        directory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), path: UnsafePointer<CChar>, flags: Int32 = 0
    ) -> SubmissionEntry {
        var e = make(.unlinkat, fd: directory.rawValue, addr: address(path))
        e.opFlags = UInt32(bitPattern: flags)
        return e
    }

    /// `IORING_OP_MKDIRAT`: `mkdirat(2)`.
    @inlinable
    public static func mkdirat(
        directory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), path: UnsafePointer<CChar>, mode: mode_t
    ) -> SubmissionEntry {
        make(.mkdirat, fd: directory.rawValue, addr: address(path), len: mode)
    }

    /// `IORING_OP_SYMLINKAT`: `symlinkat(2)`: creates `linkPath` pointing at `target`.
    @inlinable
    public static func symlinkat(
        target: UnsafePointer<CChar>, directory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD),
        linkPath: UnsafePointer<CChar>
    ) -> SubmissionEntry {
        make(.symlinkat, fd: directory.rawValue, addr: address(target), off: address(linkPath))
    }

    /// `IORING_OP_LINKAT`: `linkat(2)`.
    @inlinable
    public static func linkat(
        from oldDirectory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), _ oldPath: UnsafePointer<CChar>,
        to newDirectory: FileDescriptor = FileDescriptor(rawValue: AT_FDCWD), _ newPath: UnsafePointer<CChar>,
        flags: Int32 = 0
    ) -> SubmissionEntry {
        var e = make(
            .linkat, fd: oldDirectory.rawValue, addr: address(oldPath), len: UInt32(bitPattern: newDirectory.rawValue),
            off: address(newPath))
        e.opFlags = UInt32(bitPattern: flags)
        return e
    }

    /// `IORING_OP_SPLICE`: moves `length` bytes from `input` to `output` (one must be a pipe).
    /// Offsets of `-1` (`UInt64.max`) mean "no offset" (required for pipes).
    @inlinable
    public static func splice(
        from input: FileDescriptor, offset inputOffset: UInt64, to output: FileDescriptor, offset outputOffset: UInt64,
        length: UInt32, flags: UInt32 = 0
    ) -> SubmissionEntry {
        var e = make(.splice, fd: output.rawValue, addr: inputOffset, len: length, off: outputOffset)
        e.spliceFdIn = input.rawValue
        e.opFlags = flags
        return e
    }

    /// `IORING_OP_TEE`: duplicates `length` bytes from pipe `input` into pipe `output`.
    @inlinable
    public static func tee(from input: FileDescriptor, to output: FileDescriptor, length: UInt32, flags: UInt32 = 0)
        -> SubmissionEntry
    {
        var e = make(.tee, fd: output.rawValue, len: length, off: 0)
        e.spliceFdIn = input.rawValue
        e.opFlags = flags
        return e
    }

    /// `IORING_OP_FSETXATTR`: sets extended attribute `name` on `fd`.
    @inlinable
    public static func fsetxattr(
        _ fd: FileDescriptor, name: UnsafePointer<CChar>, value: UnsafeRawBufferPointer, flags: Int32 = 0
    ) -> SubmissionEntry {
        var e = make(
            .fsetxattr, fd: fd.rawValue, addr: address(name), len: UInt32(clamping: value.count),
            off: address(value.baseAddress))
        e.opFlags = UInt32(bitPattern: flags)
        return e
    }

    /// `IORING_OP_SETXATTR`: sets extended attribute `name` on `path`.
    @inlinable
    public static func setxattr(
        path: UnsafePointer<CChar>, name: UnsafePointer<CChar>, value: UnsafeRawBufferPointer, flags: Int32 = 0
    ) -> SubmissionEntry {
        var e = make(
            .setxattr, fd: 0, addr: address(name), len: UInt32(clamping: value.count), off: address(value.baseAddress))
        e.addr3 = address(path)
        e.opFlags = UInt32(bitPattern: flags)
        return e
    }

    /// `IORING_OP_FGETXATTR`: reads extended attribute `name` of `fd` into `value`. Result: its size.
    @inlinable
    public static func fgetxattr(
        _ fd: FileDescriptor, name: UnsafePointer<CChar>, into value: UnsafeMutableRawBufferPointer
    ) -> SubmissionEntry {
        make(
            .fgetxattr, fd: fd.rawValue, addr: address(name), len: UInt32(clamping: value.count),
            off: address(value.baseAddress))
    }

    /// `IORING_OP_GETXATTR`: reads extended attribute `name` of `path` into `value`.
    @inlinable
    public static func getxattr(
        path: UnsafePointer<CChar>, name: UnsafePointer<CChar>, into value: UnsafeMutableRawBufferPointer
    ) -> SubmissionEntry {
        var e = make(
            .getxattr, fd: 0, addr: address(name), len: UInt32(clamping: value.count), off: address(value.baseAddress))
        e.addr3 = address(path)
        return e
    }

    /// `IORING_OP_FILES_UPDATE`: replaces registered files from slot `offset` with `fds`
    /// (-1 clears a slot; `IORING_FILE_INDEX_ALLOC` as offset allocates). Result: slots updated.
    @inlinable
    public static func filesUpdate(_ fds: UnsafeMutableBufferPointer<Int32>, offset: Int32) -> SubmissionEntry {
        make(
            .filesUpdate, addr: address(fds.baseAddress), len: UInt32(clamping: fds.count),
            off: UInt64(UInt32(bitPattern: offset)))
    }

    /// `IORING_OP_FIXED_FD_INSTALL`: installs fixed-file `slot` as a normal descriptor (result).
    /// `flags`: `IORING_FIXED_FD_NO_CLOEXEC` (1) to leave close-on-exec off.
    @inlinable
    public static func fixedFdInstall(slot: UInt32, flags: UInt32 = 0) -> SubmissionEntry {
        var e = make(.fixedFdInstall, fd: Int32(bitPattern: slot))
        e.flags = SQEFlags.fixedFile.rawValue
        e.opFlags = flags
        return e
    }

    /// `IORING_OP_PIPE`: `pipe2(2)` into `fds` (two `Int32`), or into fixed slots.
    @inlinable
    public static func pipe(
        _ fds: UnsafeMutablePointer<Int32>, flags: Int32 = 0, destination: FileDestination = .descriptor
    ) -> SubmissionEntry {
        var e = make(.pipe, fd: 0, addr: address(fds))
        e.opFlags = UInt32(bitPattern: flags)
        e.fileIndex = destination.fileIndex
        return e
    }

    /// `IORING_OP_PROVIDE_BUFFERS`: gives `count` buffers of `length` bytes, laid out back to back
    /// from `memory`, to legacy group `group` with ids `firstID...`.
    @inlinable
    public static func provideBuffers(
        _ memory: UnsafeMutableRawPointer, length: UInt32, count: UInt32, group: UInt16, firstID: UInt16
    ) -> SubmissionEntry {
        var e = make(
            .provideBuffers, fd: Int32(bitPattern: count), addr: address(memory), len: length, off: UInt64(firstID))
        e.bufIndex = group
        return e
    }

    /// `IORING_OP_REMOVE_BUFFERS`: takes up to `count` buffers back from legacy group `group`.
    @inlinable
    public static func removeBuffers(count: UInt32, group: UInt16) -> SubmissionEntry {
        var e = make(.removeBuffers, fd: Int32(bitPattern: count))
        e.bufIndex = group
        return e
    }
}

// MARK: Polling, epoll, processes, futexes, rings

extension SubmissionEntry {
    /// `IORING_OP_POLL_ADD`: completes with the ready events (or repeatedly with `.multishot`).
    @inlinable
    public static func pollAdd(_ fd: FileDescriptor, events: PollEvents, flags: PollFlags = []) -> SubmissionEntry {
        var e = make(.pollAdd, fd: fd.rawValue, len: flags.rawValue)
        e.opFlags = events.rawValue
        return e
    }

    /// `IORING_OP_POLL_REMOVE`: removes the poll whose user data is `target`.
    @inlinable
    public static func pollRemove(target: UInt64) -> SubmissionEntry {
        make(.pollRemove, addr: target)
    }

    /// `IORING_OP_POLL_REMOVE` as an update: new events and/or new user data for the poll `target`.
    @inlinable
    public static func pollUpdate(target: UInt64, newUserData: UInt64 = 0, events: PollEvents = [], flags: PollFlags)
        -> SubmissionEntry
    {
        var e = make(.pollRemove, addr: target, len: flags.rawValue, off: newUserData)
        e.opFlags = events.rawValue
        return e
    }

    /// `IORING_OP_EPOLL_CTL`: `epoll_ctl(2)`; `event` may be nil for `EPOLL_CTL_DEL`.
    @inlinable
    public static func epollCtl(
        _ epoll: FileDescriptor, operation: Int32, fd: FileDescriptor, event: UnsafeMutableRawPointer?
    ) -> SubmissionEntry {
        make(
            .epollCtl, fd: epoll.rawValue, addr: address(event), len: UInt32(bitPattern: operation),
            off: UInt64(UInt32(bitPattern: fd.rawValue)))
    }

    /// `IORING_OP_EPOLL_WAIT`: `epoll_wait(2)` into `events` (an array of `struct epoll_event`).
    @inlinable
    public static func epollWait(
        _ epoll: FileDescriptor, events: UnsafeMutableRawPointer, maxEvents: UInt32, flags: UInt32 = 0
    ) -> SubmissionEntry {
        var e = make(.epollWait, fd: epoll.rawValue, addr: address(events), len: maxEvents)
        e.opFlags = flags
        return e
    }

    /// `IORING_OP_WAITID`: `waitid(2)`; `info` receives a `siginfo_t` (may be nil).
    @inlinable
    public static func waitid(idType: UInt32, id: Int32, info: UnsafeMutableRawPointer?, options: Int32)
        -> SubmissionEntry
    {
        var e = make(.waitid, fd: id, len: idType, off: address(info))
        e.spliceFdIn = options
        return e
    }

    /// `IORING_OP_FUTEX_WAIT`: sleeps while `*futex == expected` (`Futex2` flags, e.g.
    /// `size32 | privateFutex`), until a wake matching `mask`.
    @inlinable
    public static func futexWait(
        _ futex: UnsafeRawPointer, expected: UInt64, mask: UInt64 = Futex2.matchAny, futexFlags: UInt32
    ) -> SubmissionEntry {
        var e = make(.futexWait, fd: Int32(bitPattern: futexFlags), addr: address(futex), off: expected)
        e.addr3 = mask
        return e
    }

    /// `IORING_OP_FUTEX_WAKE`: wakes up to `count` waiters on `futex`. Result: how many woke.
    @inlinable
    public static func futexWake(
        _ futex: UnsafeRawPointer, count: UInt64, mask: UInt64 = Futex2.matchAny, futexFlags: UInt32
    ) -> SubmissionEntry {
        var e = make(.futexWake, fd: Int32(bitPattern: futexFlags), addr: address(futex), off: count)
        e.addr3 = mask
        return e
    }

    /// `IORING_OP_FUTEX_WAITV`: waits on several futexes. Result: index of the one woken.
    @inlinable
    public static func futexWaitv(_ vector: UnsafeBufferPointer<FutexWaitVector>) -> SubmissionEntry {
        make(.futexWaitv, fd: 0, addr: address(vector.baseAddress), len: UInt32(clamping: vector.count))
    }

    /// `IORING_OP_MSG_RING` (`IORING_MSG_DATA`): posts a completion with `userData` and `result`
    /// on the ring `target`. Non-zero `completionFlags` become that completion's flags
    /// (`IORING_MSG_RING_FLAGS_PASS` is added for them; Linux 6.3).
    @inlinable
    public static func messageRing(
        _ target: FileDescriptor, result: UInt32, userData: UInt64, flags: MessageRingFlags = [],
        completionFlags: UInt32 = 0
    ) -> SubmissionEntry {
        var e = make(.msgRing, fd: target.rawValue, addr: 0, len: result, off: userData)
        // The kernel reads `file_index` as the target's CQE flags only with FLAGS_PASS (6.3);
        // without it, non-zero flags make the request fail with EINVAL.
        e.opFlags = (completionFlags == 0 ? flags : flags.union(.passFlags)).rawValue
        e.fileIndex = completionFlags
        return e
    }

    /// `IORING_OP_MSG_RING` (`IORING_MSG_SEND_FD`): installs this ring's fixed file `sourceSlot`
    /// into `destination` of ring `target`, posting `userData` there (unless skipped).
    @inlinable
    public static func messageRingSendFile(
        _ target: FileDescriptor, sourceSlot: UInt32, destination: FileDestination, userData: UInt64,
        flags: MessageRingFlags = []
    ) -> SubmissionEntry {
        var e = make(.msgRing, fd: target.rawValue, addr: 1, off: userData)
        e.addr3 = UInt64(sourceSlot)
        e.fileIndex = destination.fileIndex
        e.opFlags = flags.rawValue
        return e
    }

    /// `IORING_OP_NOP` that completes with `result` (`IORING_NOP_INJECT_RESULT`): handy to test
    /// error paths.
    @inlinable
    public static func nop(injectingResult result: Int32) -> SubmissionEntry {
        var e = make(.nop, len: UInt32(bitPattern: result))
        e.opFlags = 1  // IORING_NOP_INJECT_RESULT
        return e
    }

    /// `IORING_OP_URING_CMD`: a driver command `commandOp` on `fd`. On a 128-byte ring pass the
    /// command payload with `Ring.push(_:command:)`. Files without `uring_cmd` support complete
    /// with `-EOPNOTSUPP`.
    @inlinable
    public static func uringCommand(_ fd: FileDescriptor, commandOp: UInt32) -> SubmissionEntry {
        make(.uringCmd, fd: fd.rawValue, off: UInt64(commandOp))
    }
}

// MARK: Sockets

extension SubmissionEntry {
    /// `IORING_OP_SOCKET`: `socket(2)`. Result: the fd, or the slot with a fixed destination.
    @inlinable
    public static func socket(
        domain: Int32, type: Int32, protocol proto: Int32 = 0, destination: FileDestination = .descriptor
    ) -> SubmissionEntry {
        var e = make(.socket, fd: domain, len: UInt32(bitPattern: proto), off: UInt64(UInt32(bitPattern: type)))
        e.fileIndex = destination.fileIndex
        return e
    }

    /// `IORING_OP_BIND`: `bind(2)`.
    @inlinable
    public static func bind(_ fd: FileDescriptor, address sockaddr: UnsafeRawPointer, length: socklen_t)
        -> SubmissionEntry
    {
        make(.bind, fd: fd.rawValue, addr: address(sockaddr), off: UInt64(length))
    }

    /// `IORING_OP_LISTEN`: `listen(2)`.
    @inlinable
    public static func listen(_ fd: FileDescriptor, backlog: Int32) -> SubmissionEntry {
        make(.listen, fd: fd.rawValue, len: UInt32(bitPattern: backlog))
    }

    /// `IORING_OP_CONNECT`: `connect(2)` to the address (which must stay valid until completion).
    @inlinable
    public static func connect(_ fd: FileDescriptor, address sockaddr: UnsafeRawPointer, length: socklen_t)
        -> SubmissionEntry
    {
        make(.connect, fd: fd.rawValue, addr: address(sockaddr), off: UInt64(length))
    }

    /// `IORING_OP_ACCEPT`: `accept4(2)`. `peer`/`peerLength` may be nil. With `multishot`, one
    /// completion with `F_MORE` per connection until cancelled.
    @inlinable
    public static func accept(
        _ fd: FileDescriptor, peer: UnsafeMutableRawPointer? = nil, peerLength: UnsafeMutablePointer<socklen_t>? = nil,
        flags: Int32 = 0, multishot: Bool = false, destination: FileDestination = .descriptor
    ) -> SubmissionEntry {
        var e = make(.accept, fd: fd.rawValue, addr: address(peer), off: address(peerLength))
        e.opFlags = UInt32(bitPattern: flags)
        if multishot { e.ioprio = 1 }  // IORING_ACCEPT_MULTISHOT
        e.fileIndex = destination.fileIndex
        return e
    }

    /// `IORING_OP_SHUTDOWN`: `shutdown(2)` with `SHUT_RD`/`SHUT_WR`/`SHUT_RDWR`.
    @inlinable
    public static func shutdown(_ fd: FileDescriptor, how: Int32) -> SubmissionEntry {
        make(.shutdown, fd: fd.rawValue, len: UInt32(bitPattern: how))
    }

    /// `IORING_OP_SEND`: `send(2)` of `buffer`. Add `.bundle` with a buffer group to send from
    /// provided buffers.
    @inlinable
    public static func send(
        _ fd: FileDescriptor, _ buffer: UnsafeRawBufferPointer, flags: Int32 = 0, options: SendReceiveFlags = []
    ) -> SubmissionEntry {
        var e = make(.send, fd: fd.rawValue, addr: address(buffer.baseAddress), len: UInt32(clamping: buffer.count))
        e.opFlags = UInt32(bitPattern: flags)
        e.ioprio = options.rawValue
        return e
    }

    /// `IORING_OP_RECV`: `recv(2)` into `buffer`.
    @inlinable
    public static func recv(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, flags: Int32 = 0,
        options: SendReceiveFlags = []
    ) -> SubmissionEntry {
        var e = make(.recv, fd: fd.rawValue, addr: address(buffer.baseAddress), len: UInt32(clamping: buffer.count))
        e.opFlags = UInt32(bitPattern: flags)
        e.ioprio = options.rawValue
        return e
    }

    /// `IORING_OP_RECV` into a buffer the kernel selects from `group` (`IOSQE_BUFFER_SELECT`).
    /// Add `.multishot` to keep receiving (`F_MORE`), `.bundle` to fill several buffers at once.
    @inlinable
    public static func recv(
        _ fd: FileDescriptor, bufferGroup group: UInt16, flags: Int32 = 0, options: SendReceiveFlags = []
    ) -> SubmissionEntry {
        var e = make(.recv, fd: fd.rawValue)
        e.opFlags = UInt32(bitPattern: flags)
        e.ioprio = options.rawValue
        e.bufIndex = group
        e.flags = SQEFlags.bufferSelect.rawValue
        return e
    }

    /// `IORING_OP_SENDMSG`: `sendmsg(2)`.
    @inlinable
    public static func sendmsg(
        _ fd: FileDescriptor, _ message: UnsafePointer<msghdr>, flags: Int32 = 0, options: SendReceiveFlags = []
    ) -> SubmissionEntry {
        var e = make(.sendmsg, fd: fd.rawValue, addr: address(message), len: 1)
        e.opFlags = UInt32(bitPattern: flags)
        e.ioprio = options.rawValue
        return e
    }

    /// `IORING_OP_RECVMSG`: `recvmsg(2)`. For multishot, pass `bufferGroup` and `.multishot`: each
    /// buffer then starts with a `struct io_uring_recvmsg_out` header.
    @inlinable
    public static func recvmsg(
        _ fd: FileDescriptor, _ message: UnsafeMutablePointer<msghdr>, flags: Int32 = 0,
        options: SendReceiveFlags = [], bufferGroup: UInt16? = nil
    ) -> SubmissionEntry {
        var e = make(.recvmsg, fd: fd.rawValue, addr: address(message), len: 1)
        e.opFlags = UInt32(bitPattern: flags)
        e.ioprio = options.rawValue
        if let group = bufferGroup {
            e.bufIndex = group
            e.flags = SQEFlags.bufferSelect.rawValue
        }
        return e
    }

    /// `IORING_OP_SEND_ZC`: zero-copy send. Two completions: the result (with `F_MORE`), then a
    /// notification (`F_NOTIF`) once the kernel no longer reads `buffer`: keep it until then.
    @inlinable
    public static func sendZeroCopy(
        _ fd: FileDescriptor, _ buffer: UnsafeRawBufferPointer, flags: Int32 = 0, options: SendReceiveFlags = [],
        fixedBufferIndex: UInt16? = nil
    ) -> SubmissionEntry {
        var e = make(.sendZC, fd: fd.rawValue, addr: address(buffer.baseAddress), len: UInt32(clamping: buffer.count))
        e.opFlags = UInt32(bitPattern: flags)
        var o = options
        if let index = fixedBufferIndex {
            o.insert(.fixedBuffer)
            e.bufIndex = index
        }
        e.ioprio = o.rawValue
        return e
    }

    /// `IORING_OP_SENDMSG_ZC`: zero-copy `sendmsg`, with the same two completions as `sendZeroCopy`
    /// (keep the message, its vector and its buffers until the notification). `options` as for
    /// `sendZeroCopy` (`reportUsage` needs Linux 6.2); not `fixedBuffer`.
    @inlinable
    public static func sendmsgZeroCopy(
        _ fd: FileDescriptor, _ message: UnsafePointer<msghdr>, flags: Int32 = 0, options: SendReceiveFlags = []
    ) -> SubmissionEntry {
        var e = make(.sendmsgZC, fd: fd.rawValue, addr: address(message), len: 1)
        e.opFlags = UInt32(bitPattern: flags)
        e.ioprio = options.rawValue
        return e
    }

    /// `IORING_OP_RECV_ZC`: zero-copy receive through zcrx interface queue `interfaceQueue`
    /// (needs a NIC queue registered with `IORING_REGISTER_ZCRX_IFQ`; otherwise `-EINVAL`).
    @inlinable
    public static func recvZeroCopy(
        _ fd: FileDescriptor, interfaceQueue: UInt32, length: UInt32 = 0, multishot: Bool = true
    ) -> SubmissionEntry {
        var e = make(.recvZC, fd: fd.rawValue, len: length)
        if multishot { e.ioprio = SendReceiveFlags.multishot.rawValue }
        e.fileIndex = interfaceQueue
        return e
    }
}
