// The one file that imports the C shim and turns its `-errno` results into `Errno`.
import CSyscalls
public import SystemPackage

/// Thin typed wrappers over the three io_uring system calls. Internal: the public API is `Ring`.
@usableFromInline
enum Syscall {
    @inline(__always)
    static func check(_ result: Int32) throws(Errno) -> Int32 {
        if result < 0 { throw Errno(rawValue: -result) }
        return result
    }

    static func setup(entries: UInt32, parameters: inout RingParameters) throws(Errno) -> Int32 {
        let result = withUnsafeMutablePointer(to: &parameters) { cs_io_uring_setup(entries, $0) }
        return try check(result)
    }

    @usableFromInline @inline(__always)
    static func enter(
        _ fd: Int32, toSubmit: UInt32, minComplete: UInt32, flags: UInt32,
        argument: UnsafeRawPointer?, argumentSize: Int
    ) -> Int32 {
        cs_io_uring_enter(fd, toSubmit, minComplete, flags, argument, argumentSize)
    }

    static func register(
        _ fd: Int32, opcode: UInt32, argument: UnsafeRawPointer?, count: UInt32
    ) throws(Errno) -> Int32 {
        try check(cs_io_uring_register(fd, opcode, argument, count))
    }

    static func currentErrno() -> Errno { Errno(rawValue: cs_errno()) }

    /// A token naming the calling thread that no other thread of this process ever gets (a
    /// `pthread_t` is handed on to the next thread after a join, so it cannot tell threads apart).
    @usableFromInline
    static var threadToken: UInt64 { cs_thread_token() }
}

extension FileDescriptor.OpenOptions {
    /// `O_DIRECT`: bypass the page cache (buffers, offsets and lengths must be aligned to the
    /// device's logical block size, usually 512 or 4096 bytes, or the I/O fails with `EINVAL`).
    public static var direct: FileDescriptor.OpenOptions { .init(rawValue: cs_o_direct()) }
}

/// Small libc services from the shim that other files need.
enum CSyscallsBridge {
    /// A non-blocking, close-on-exec eventfd, or -1.
    static func eventFD() -> Int32 { cs_eventfd(0) }
}
