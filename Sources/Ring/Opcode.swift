/// An io_uring operation code (`io_uring_sqe.opcode`, the kernel's `enum io_uring_op`).
///
/// The values are the kernel's ABI and never change once released. Kernel 6.18 defines 0 through
/// 62; newer kernels append. Any `UInt8` can be carried (the raw API may send numbers the kernel
/// does not know, and the kernel answers them with `EINVAL` in the completion).
public struct Opcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The kernel's opcode number.
    public var rawValue: UInt8
    /// An opcode by number, including ones this package does not name.
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    @inlinable init(_ value: UInt8) { self.rawValue = value }

    /// `IORING_OP_NOP`: completes at once with result 0.
    public static let nop = Opcode(0)
    /// `IORING_OP_READV`: vectored read, like `preadv2(2)`.
    public static let readv = Opcode(1)
    /// `IORING_OP_WRITEV`: vectored write, like `pwritev2(2)`.
    public static let writev = Opcode(2)
    /// `IORING_OP_FSYNC`: `fsync(2)`, or `fdatasync(2)` with `FsyncFlags.dataSync`.
    public static let fsync = Opcode(3)
    /// `IORING_OP_READ_FIXED`: read into a registered buffer.
    public static let readFixed = Opcode(4)
    /// `IORING_OP_WRITE_FIXED`: write from a registered buffer.
    public static let writeFixed = Opcode(5)
    /// `IORING_OP_POLL_ADD`: wait for poll events on a file.
    public static let pollAdd = Opcode(6)
    /// `IORING_OP_POLL_REMOVE`: remove or update an armed poll.
    public static let pollRemove = Opcode(7)
    /// `IORING_OP_SYNC_FILE_RANGE`: `sync_file_range(2)`.
    public static let syncFileRange = Opcode(8)
    /// `IORING_OP_SENDMSG`: `sendmsg(2)`.
    public static let sendmsg = Opcode(9)
    /// `IORING_OP_RECVMSG`: `recvmsg(2)`.
    public static let recvmsg = Opcode(10)
    /// `IORING_OP_TIMEOUT`: a timer, optionally completing after N other completions.
    public static let timeout = Opcode(11)
    /// `IORING_OP_TIMEOUT_REMOVE`: cancel or update a timeout.
    public static let timeoutRemove = Opcode(12)
    /// `IORING_OP_ACCEPT`: `accept4(2)`.
    public static let accept = Opcode(13)
    /// `IORING_OP_ASYNC_CANCEL`: cancel in-flight requests.
    public static let asyncCancel = Opcode(14)
    /// `IORING_OP_LINK_TIMEOUT`: a timeout bounding the request linked before it.
    public static let linkTimeout = Opcode(15)
    /// `IORING_OP_CONNECT`: `connect(2)`.
    public static let connect = Opcode(16)
    /// `IORING_OP_FALLOCATE`: `fallocate(2)`.
    public static let fallocate = Opcode(17)
    /// `IORING_OP_OPENAT`: `openat(2)`.
    public static let openat = Opcode(18)
    /// `IORING_OP_CLOSE`: `close(2)`, or release a fixed-file slot.
    public static let close = Opcode(19)
    /// `IORING_OP_FILES_UPDATE`: update registered files from the ring.
    public static let filesUpdate = Opcode(20)
    /// `IORING_OP_STATX`: `statx(2)`.
    public static let statx = Opcode(21)
    /// `IORING_OP_READ`: `pread(2)`/`read(2)`.
    public static let read = Opcode(22)
    /// `IORING_OP_WRITE`: `pwrite(2)`/`write(2)`.
    public static let write = Opcode(23)
    /// `IORING_OP_FADVISE`: `posix_fadvise(2)`.
    public static let fadvise = Opcode(24)
    /// `IORING_OP_MADVISE`: `madvise(2)`.
    public static let madvise = Opcode(25)
    /// `IORING_OP_SEND`: `send(2)`.
    public static let send = Opcode(26)
    /// `IORING_OP_RECV`: `recv(2)`.
    public static let recv = Opcode(27)
    /// `IORING_OP_OPENAT2`: `openat2(2)`.
    public static let openat2 = Opcode(28)
    /// `IORING_OP_EPOLL_CTL`: `epoll_ctl(2)`.
    public static let epollCtl = Opcode(29)
    /// `IORING_OP_SPLICE`: `splice(2)`.
    public static let splice = Opcode(30)
    /// `IORING_OP_PROVIDE_BUFFERS`: hand buffers to a legacy buffer group.
    public static let provideBuffers = Opcode(31)
    /// `IORING_OP_REMOVE_BUFFERS`: take buffers back from a legacy buffer group.
    public static let removeBuffers = Opcode(32)
    /// `IORING_OP_TEE`: `tee(2)`.
    public static let tee = Opcode(33)
    /// `IORING_OP_SHUTDOWN`: `shutdown(2)`.
    public static let shutdown = Opcode(34)
    /// `IORING_OP_RENAMEAT`: `renameat2(2)`.
    public static let renameat = Opcode(35)
    /// `IORING_OP_UNLINKAT`: `unlinkat(2)`.
    public static let unlinkat = Opcode(36)
    /// `IORING_OP_MKDIRAT`: `mkdirat(2)`.
    public static let mkdirat = Opcode(37)
    /// `IORING_OP_SYMLINKAT`: `symlinkat(2)`.
    public static let symlinkat = Opcode(38)
    /// `IORING_OP_LINKAT`: `linkat(2)`.
    public static let linkat = Opcode(39)
    /// `IORING_OP_MSG_RING`: post a completion (or pass a fixed file) to another ring.
    public static let msgRing = Opcode(40)
    /// `IORING_OP_FSETXATTR`: `fsetxattr(2)`.
    public static let fsetxattr = Opcode(41)
    /// `IORING_OP_SETXATTR`: `setxattr(2)`.
    public static let setxattr = Opcode(42)
    /// `IORING_OP_FGETXATTR`: `fgetxattr(2)`.
    public static let fgetxattr = Opcode(43)
    /// `IORING_OP_GETXATTR`: `getxattr(2)`.
    public static let getxattr = Opcode(44)
    /// `IORING_OP_SOCKET`: `socket(2)`.
    public static let socket = Opcode(45)
    /// `IORING_OP_URING_CMD`: a driver-specific passthrough command.
    public static let uringCmd = Opcode(46)
    /// `IORING_OP_SEND_ZC`: zero-copy send (posts a notification CQE when the buffer is free).
    public static let sendZC = Opcode(47)
    /// `IORING_OP_SENDMSG_ZC`: zero-copy `sendmsg`.
    public static let sendmsgZC = Opcode(48)
    /// `IORING_OP_READ_MULTISHOT`: repeated reads into provided buffers.
    public static let readMultishot = Opcode(49)
    /// `IORING_OP_WAITID`: `waitid(2)`.
    public static let waitid = Opcode(50)
    /// `IORING_OP_FUTEX_WAIT`: `futex_wait(2)`.
    public static let futexWait = Opcode(51)
    /// `IORING_OP_FUTEX_WAKE`: `futex_wake(2)`.
    public static let futexWake = Opcode(52)
    /// `IORING_OP_FUTEX_WAITV`: `futex_waitv(2)`.
    public static let futexWaitv = Opcode(53)
    /// `IORING_OP_FIXED_FD_INSTALL`: turn a fixed file into a normal descriptor.
    public static let fixedFdInstall = Opcode(54)
    /// `IORING_OP_FTRUNCATE`: `ftruncate(2)`.
    public static let ftruncate = Opcode(55)
    /// `IORING_OP_BIND`: `bind(2)`.
    public static let bind = Opcode(56)
    /// `IORING_OP_LISTEN`: `listen(2)`.
    public static let listen = Opcode(57)
    /// `IORING_OP_RECV_ZC`: zero-copy receive (needs a NIC queue registered with zcrx).
    public static let recvZC = Opcode(58)
    /// `IORING_OP_EPOLL_WAIT`: `epoll_wait(2)`.
    public static let epollWait = Opcode(59)
    /// `IORING_OP_READV_FIXED`: vectored read into registered buffers.
    public static let readvFixed = Opcode(60)
    /// `IORING_OP_WRITEV_FIXED`: vectored write from registered buffers.
    public static let writevFixed = Opcode(61)
    /// `IORING_OP_PIPE`: `pipe2(2)`, optionally into fixed-file slots.
    public static let pipe = Opcode(62)

    /// Every opcode this package names, in numeric order, with its kernel name.
    public static let allKnown: [(opcode: Opcode, kernelName: String)] = [
        (.nop, "IORING_OP_NOP"), (.readv, "IORING_OP_READV"), (.writev, "IORING_OP_WRITEV"),
        (.fsync, "IORING_OP_FSYNC"), (.readFixed, "IORING_OP_READ_FIXED"),
        (.writeFixed, "IORING_OP_WRITE_FIXED"), (.pollAdd, "IORING_OP_POLL_ADD"),
        (.pollRemove, "IORING_OP_POLL_REMOVE"), (.syncFileRange, "IORING_OP_SYNC_FILE_RANGE"),
        (.sendmsg, "IORING_OP_SENDMSG"), (.recvmsg, "IORING_OP_RECVMSG"),
        (.timeout, "IORING_OP_TIMEOUT"), (.timeoutRemove, "IORING_OP_TIMEOUT_REMOVE"),
        (.accept, "IORING_OP_ACCEPT"), (.asyncCancel, "IORING_OP_ASYNC_CANCEL"),
        (.linkTimeout, "IORING_OP_LINK_TIMEOUT"), (.connect, "IORING_OP_CONNECT"),
        (.fallocate, "IORING_OP_FALLOCATE"), (.openat, "IORING_OP_OPENAT"),
        (.close, "IORING_OP_CLOSE"), (.filesUpdate, "IORING_OP_FILES_UPDATE"),
        (.statx, "IORING_OP_STATX"), (.read, "IORING_OP_READ"), (.write, "IORING_OP_WRITE"),
        (.fadvise, "IORING_OP_FADVISE"), (.madvise, "IORING_OP_MADVISE"),
        (.send, "IORING_OP_SEND"), (.recv, "IORING_OP_RECV"), (.openat2, "IORING_OP_OPENAT2"),
        (.epollCtl, "IORING_OP_EPOLL_CTL"), (.splice, "IORING_OP_SPLICE"),
        (.provideBuffers, "IORING_OP_PROVIDE_BUFFERS"),
        (.removeBuffers, "IORING_OP_REMOVE_BUFFERS"), (.tee, "IORING_OP_TEE"),
        (.shutdown, "IORING_OP_SHUTDOWN"), (.renameat, "IORING_OP_RENAMEAT"),
        (.unlinkat, "IORING_OP_UNLINKAT"), (.mkdirat, "IORING_OP_MKDIRAT"),
        (.symlinkat, "IORING_OP_SYMLINKAT"), (.linkat, "IORING_OP_LINKAT"),
        (.msgRing, "IORING_OP_MSG_RING"), (.fsetxattr, "IORING_OP_FSETXATTR"),
        (.setxattr, "IORING_OP_SETXATTR"), (.fgetxattr, "IORING_OP_FGETXATTR"),
        (.getxattr, "IORING_OP_GETXATTR"), (.socket, "IORING_OP_SOCKET"),
        (.uringCmd, "IORING_OP_URING_CMD"), (.sendZC, "IORING_OP_SEND_ZC"),
        (.sendmsgZC, "IORING_OP_SENDMSG_ZC"), (.readMultishot, "IORING_OP_READ_MULTISHOT"),
        (.waitid, "IORING_OP_WAITID"), (.futexWait, "IORING_OP_FUTEX_WAIT"),
        (.futexWake, "IORING_OP_FUTEX_WAKE"), (.futexWaitv, "IORING_OP_FUTEX_WAITV"),
        (.fixedFdInstall, "IORING_OP_FIXED_FD_INSTALL"), (.ftruncate, "IORING_OP_FTRUNCATE"),
        (.bind, "IORING_OP_BIND"), (.listen, "IORING_OP_LISTEN"),
        (.recvZC, "IORING_OP_RECV_ZC"), (.epollWait, "IORING_OP_EPOLL_WAIT"),
        (.readvFixed, "IORING_OP_READV_FIXED"), (.writevFixed, "IORING_OP_WRITEV_FIXED"),
        (.pipe, "IORING_OP_PIPE"),
    ]

    /// The kernel's name (`IORING_OP_READ`), or `IORING_OP_<n>` for a number this package does
    /// not know.
    public var kernelName: String {
        let index = Int(rawValue)
        if index < Opcode.allKnown.count { return Opcode.allKnown[index].kernelName }
        return "IORING_OP_\(rawValue)"
    }

    /// The kernel's name (`IORING_OP_*`), or the number for an opcode this package does not name.
    public var description: String { kernelName }
}
