import Glibc
import Ring
import SystemPackage

// Servers on the ring: closing a descriptor that still has operations pending, and learning
// that shutdown has begun so idle connections can be closed early.

extension RingExecutor {
    /// Cancels every operation of this executor still pending on `fd` (what `close(_:)` does
    /// first). Returns once the cancels have been handed to the kernel; each cancelled operation's
    /// task still resumes only from that operation's own completion, so no buffer is released
    /// while the kernel may use it. On Linux 5.19+ one `IORING_OP_ASYNC_CANCEL` with
    /// `IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL` cancels every request on the file,
    /// also those not made through this executor's records; on older kernels the executor cancels
    /// its own records whose entry names `fd` (the kernel matches by the open file; the executor
    /// can only match by the number). Descriptors used as fixed-file indexes are not matched.
    nonisolated(nonsending) func cancelPending(on fd: FileDescriptor) async {
        guard let uring = uringEngine else { return }  // the aio engines cannot close through the engine
        if uring.canCancelAny {  // CANCEL_FD and CANCEL_ALL came with CANCEL_ANY, in 5.19
            // -ENOENT: nothing was pending. Not bounded by `withTimeout` and not refused for a
            // cancelled task here: `close` itself applies both rules right after.
            _ = await submitReusingRecord(.cancel(fd: fd, flags: [.all]))
            return
        }
        await onLoopThread { [self] in
            for operation in pendingRecords() where operation.names(fd) { requestCancel(operation) }
        } afterExit: {
        }
    }

    /// Records handed to the engine and not finally completed, then those still queued (loop
    /// thread).
    private func pendingRecords() -> [Operation] {
        var records: [Operation] = []
        var next = oldestInFlight
        while let operation = next {
            records.append(operation)
            next = operation.newer
        }
        return records + queuedOperations()
    }
}

extension Operation {
    /// Whether one of this record's entries operates on the open file `fd` (by number, not as a
    /// fixed-file index).
    fileprivate func names(_ fd: FileDescriptor) -> Bool {
        ([entry] + chain).contains { entry in
            entry.fd == fd.rawValue && !entry.sqeFlags.contains(.fixedFile)
                && !Self.opcodesWithoutFile.contains(entry.op.rawValue)
        }
    }

    /// Operations whose `fd` field is not a file the request holds (a directory for a path, the
    /// descriptor to close, a buffer group's count, nothing at all).
    private static let opcodesWithoutFile: Set<UInt8> = Set(
        [
            Opcode.nop, .timeout, .timeoutRemove, .linkTimeout, .asyncCancel, .openat, .openat2, .close, .statx,
            .filesUpdate, .provideBuffers, .removeBuffers, .renameat, .unlinkat, .mkdirat, .symlinkat, .linkat,
            .socket,
        ].map(\.rawValue))
}
