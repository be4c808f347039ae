import Glibc
import Ring
public import SystemPackage

/// What a zero-copy send did (`RingExecutor.sendZeroCopy(_:from:flags:)`).
public struct ZeroCopySend: Sendable, Equatable {
    /// Bytes the socket took; for a stream socket possibly fewer than were offered.
    public var bytesSent: Int
    /// Whether the kernel copied the bytes after all instead of sending them from the caller's
    /// memory: true over loopback and through devices without scatter-gather, where the
    /// zero-copy path costs more than a plain send. nil before Linux 6.2, which does not say.
    public var copied: Bool?

    public init(bytesSent: Int, copied: Bool?) {
        self.bytesSent = bytesSent
        self.copied = copied
    }
}

extension RingExecutor {
    /// Sends the bytes of `buffers`, in order, with one `sendmsg(2)` (io_uring `SENDMSG`);
    /// returns the bytes sent, which on a stream socket may be fewer than the total: send the
    /// rest from where it stopped. `destination` addresses a datagram (nil on a connected
    /// socket). `MSG_NOSIGNAL` is always added: a peer that went away is `EPIPE`, never SIGPIPE.
    /// More buffers than the kernel takes in one call (`UIO_MAXIOV`, 1024) is `EMSGSIZE`.
    ///
    /// The buffers, the vector that lists them and the address stay untouched until the call
    /// returns, which is only after the kernel's completion, also when the task is cancelled.
    /// io_uring only (`EngineError.unsupported` on the aio engines).
    public nonisolated(nonsending) func send(
        _ fd: FileDescriptor, buffers: [UnsafeRawBufferPointer], to destination: SocketAddress? = nil,
        flags: Int32 = 0
    ) async throws -> Int {
        let message = OwnedMessage(buffers, to: destination)
        defer { message.deallocate() }  // `perform` returns only after the completion
        return try await perform(.sendmsg(fd, message.header, flags: flags | Int32(MSG_NOSIGNAL)))
    }

    /// Sends from `buffer` without copying it into the kernel (io_uring `SEND_ZC`, Linux 6.0):
    /// the network stack reads the caller's memory while it transmits. Returns only once the
    /// kernel has said it no longer reads `buffer` (its notification completion), so when this
    /// returns, normally or by throwing, the buffer is the caller's to change or free: the wait
    /// cannot be skipped. For TCP that is typically when the peer has acknowledged the data, a
    /// round trip later than a plain `send` returns; worth it for large buffers on real
    /// network devices, not for small ones or loopback (where the kernel copies anyway: see
    /// `ZeroCopySend.copied`).
    ///
    /// The kernel lets go of bytes the socket took only once they have left it, so for TCP a
    /// peer that stops reading holds the call, with the socket's window closed, for as long as
    /// it does not read. Cancelling the task, or the deadline of `withTimeout`, cancels a send
    /// still waiting for room in the socket (`CancellationError`, `Errno.timedOut`), but cannot
    /// shorten that wait: the call returns when the notification comes, and it is listed as
    /// `awaitingNotification` in `inFlightOperations()` (and ring-top) meanwhile. To give up on
    /// such a peer, reset the connection from another task: `SO_LINGER` with a zero timeout,
    /// then close the socket; the kernel drops the queued bytes and the call returns with the
    /// count the socket took. Shutting the executor down waits for such a send too.
    ///
    /// `MSG_NOSIGNAL` is always added. Sockets that cannot send zero-copy (Unix sockets) give
    /// `EOPNOTSUPP`. `EngineError` on the aio engines and on kernels without `SEND_ZC`.
    public nonisolated(nonsending) func sendZeroCopy(
        _ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, flags: Int32 = 0
    ) async throws -> ZeroCopySend {
        try await sendZeroCopy("zero-copy send") { options in
            .sendZeroCopy(fd, buffer, flags: flags | Int32(MSG_NOSIGNAL), options: options)
        }
    }

    /// Sends the bytes of `buffers`, in order, without copying them into the kernel: one
    /// zero-copy `sendmsg(2)` (io_uring `SENDMSG_ZC`, Linux 6.1). Everything
    /// `sendZeroCopy(_:from:flags:)` says holds here too: the call returns only once the kernel
    /// has let go of every buffer (its notification), a cancelled or timed-out call cannot
    /// shorten that wait, and `MSG_NOSIGNAL` is always added. As for `send(_:buffers:to:flags:)`,
    /// a stream socket may take fewer bytes than the total (send the rest from where it
    /// stopped), `destination` addresses a datagram, and more than 1024 buffers is `EMSGSIZE`.
    /// `EngineError` on the aio engines and on kernels without `SENDMSG_ZC`.
    public nonisolated(nonsending) func sendZeroCopy(
        _ fd: FileDescriptor, buffers: [UnsafeRawBufferPointer], to destination: SocketAddress? = nil,
        flags: Int32 = 0
    ) async throws -> ZeroCopySend {
        let message = OwnedMessage(buffers, to: destination)
        defer { message.deallocate() }  // after the notification: the kernel has let go of it all
        return try await sendZeroCopy("zero-copy sendmsg") { options in
            .sendmsgZeroCopy(fd, message.header, flags: flags | Int32(MSG_NOSIGNAL), options: options)
        }
    }

    /// Submits the zero-copy send that `entry` makes (given the options to set) and returns
    /// after its last completion, the notification.
    private nonisolated(nonsending) func sendZeroCopy(
        _ name: String, _ entry: (SendReceiveFlags) -> SubmissionEntry
    ) async throws -> ZeroCopySend {
        let reportsUsage = uringEngine?.reportsZeroCopyUsage == true
        let entry = entry(reportsUsage ? .reportUsage : [])
        if let refusal = refusal(name, entry) { throw refusal }
        let operation = Operation(entry)
        operation.awaitsNotification = true
        let result: Int32
        if let deadline = timeoutDeadline() {
            let (raw, timerFired) = await submit(operation, cancellingAt: deadline)
            let timedOut = (raw == -ECANCELED || raw == -EINTR) && timerFired && !Task.isCancelled
            result = timedOut ? -ETIMEDOUT : raw
        } else {
            result = await submit(operation)
        }
        // The last completion has been reaped: the kernel has let go of the memory.
        if result >= 0 {
            // With REPORT_USAGE the notification's result is IORING_NOTIF_USAGE_ZC_COPIED (bit
            // 31) when any of the data was copied, else 0.
            let copied = reportsUsage ? operation.notificationResult.map { $0 & Int32.min != 0 } : nil
            return ZeroCopySend(bytesSent: Int(result), copied: copied)
        }
        if (result == -ECANCELED || result == -EINTR) && Task.isCancelled { throw CancellationError() }
        throw Errno(rawValue: -result)
    }
}

/// A `msghdr` for `sendmsg` in memory of its own: the vector listing `buffers` and a copy of
/// the destination address. Freed by the caller once the kernel is done with it.
private struct OwnedMessage {
    let header: UnsafeMutablePointer<msghdr>

    init(_ buffers: [UnsafeRawBufferPointer], to destination: SocketAddress?) {
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: max(buffers.count, 1))
        for (index, buffer) in buffers.enumerated() {
            (vectors + index).initialize(
                to: iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count))
        }
        var message = msghdr()
        message.msg_iov = vectors
        message.msg_iovlen = buffers.count
        if let destination {
            message.msg_name = UnsafeMutableRawPointer(destination.copied())
            message.msg_namelen = destination.length
        }
        header = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
        header.initialize(to: message)
    }

    func deallocate() {
        header.pointee.msg_iov.deallocate()
        header.pointee.msg_name?.deallocate()
        header.deallocate()
    }
}
