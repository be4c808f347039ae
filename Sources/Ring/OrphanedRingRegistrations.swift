import Synchronization

/// Registered ring fds whose `Ring` was dropped on another thread than the one that registered
/// it. A registration lives in the registering thread's io_uring context and only that thread
/// can remove it (`IORING_UNREGISTER_RING_FDS` acts on the caller's own table), so a foreign
/// `deinit` leaves a note here and the registering thread acts on it the next time it creates
/// or drops a `Ring`. Until then, or until that thread exits, the kernel keeps the ring itself
/// (its memory, not its requests: `deinit` cancelled those) alive.
enum OrphanedRingRegistrations {
    /// Notes not yet acted on. Written under `notes`' lock; read without it (relaxed) as a cheap
    /// "anything to do?" test: a stale zero only delays the clean-up to the thread's next call.
    private static let count = Atomic<Int>(0)
    private static let notes = Mutex<[(thread: UInt64, index: Int32)]>([])

    /// `IORING_REGISTER_USE_REGISTERED_RING`: the fd argument of `io_uring_register` is an index
    /// into the caller's registered rings (Linux 6.3).
    private static let useRegisteredRing: UInt32 = 1 << 31

    static func add(thread: UInt64, index: Int32) {
        notes.withLock { notes in
            notes.append((thread, index))
            count.add(1, ordering: .relaxed)
        }
    }

    /// Removes the registrations this thread left behind for rings that are gone.
    static func releaseThisThreads() {
        guard count.load(ordering: .relaxed) > 0 else { return }
        let me = Syscall.threadToken
        let mine = notes.withLock { notes -> [Int32] in
            let mine = notes.filter { $0.thread == me }.map(\.index)
            notes.removeAll { $0.thread == me }
            count.subtract(mine.count, ordering: .relaxed)
            return mine
        }
        for index in mine {
            // The slot still holds the dropped ring (nothing else can take an occupied slot), so
            // naming it by index reaches that ring and removes this thread's reference to it.
            var update = ResourceUpdate()
            update.offset = UInt32(index)
            _ = try? Syscall.register(
                index, opcode: RegisterOpcode.unregisterRingFDs.rawValue | useRegisteredRing, argument: &update, count: 1)
        }
    }
}
