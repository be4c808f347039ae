import Glibc
import Synchronization

/// Registered ring fds whose `Ring` was dropped on another thread than the one that registered
/// it. A registration lives in the registering thread's io_uring context and only that thread
/// can remove it (`IORING_UNREGISTER_RING_FDS` acts on the caller's own table), so a foreign
/// `deinit` leaves a note here and the registering thread acts on it the next time it creates
/// or drops a `Ring`. Until then, or until that thread exits (the kernel then drops the
/// thread's registrations itself), the kernel keeps the ring (its memory, not its requests:
/// `deinit` cancelled those) alive.
enum OrphanedRingRegistrations {
    private struct State {
        /// Registrations to remove, by the registering thread's token.
        var notes: [(thread: UInt64, index: Int32)] = []
        /// Threads that registered a ring fd and have not exited.
        var live: Set<UInt64> = []
    }

    /// `notes.count`, written under the lock and read without it (relaxed) as a cheap "anything
    /// to do?" test: a stale zero only delays the clean-up to the thread's next call.
    private static let count = Atomic<Int>(0)
    private static let lock = Lock()
    nonisolated(unsafe) private static var guarded = State()

    /// `IORING_REGISTER_USE_REGISTERED_RING`: the fd argument of `io_uring_register` is an index
    /// into the caller's registered rings (Linux 6.3).
    private static let useRegisteredRing: UInt32 = 1 << 31

    /// Notes not yet acted on for `thread` (tests).
    static func pending(for thread: UInt64) -> Int {
        lock.withLock { guarded.notes.count { $0.thread == thread } }
    }

    /// Called on a thread that has registered a ring fd. A pthread key destructor forgets the
    /// thread when it exits, so notes are never left for a thread that cannot act on them.
    static func watchThisThread() {
        let token = Syscall.threadToken
        guard pthread_getspecific(exitKey) == nil else { return }
        lock.withLock { _ = guarded.live.insert(token) }
        pthread_setspecific(exitKey, UnsafeRawPointer(bitPattern: UInt(token)))
    }

    private static let exitKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { value in
            guard let value else { return }
            OrphanedRingRegistrations.forget(thread: UInt64(UInt(bitPattern: value)))
        }
        return key
    }()

    private static func forget(thread: UInt64) {
        lock.withLock {
            guarded.live.remove(thread)
            let before = guarded.notes.count
            guarded.notes.removeAll { $0.thread == thread }
            count.subtract(before - guarded.notes.count, ordering: .relaxed)
        }
    }

    /// Leaves a note for `thread`, unless it has exited (its registrations are gone already).
    static func add(thread: UInt64, index: Int32) {
        lock.withLock {
            guard guarded.live.contains(thread) else { return }
            guarded.notes.append((thread, index))
            count.add(1, ordering: .relaxed)
        }
    }

    /// Removes the registrations this thread left behind for rings that are gone.
    ///
    /// `IORING_UNREGISTER_RING_FDS` acts on the calling thread's own table whatever ring it is
    /// called through, so `ringFD` (any open ring; the caller's own) reaches the slots on every
    /// kernel since 5.18. Without it, or when that ring refuses the call (a single-issuer ring
    /// used off its thread says EEXIST), the slot itself is named with
    /// `IORING_REGISTER_USE_REGISTERED_RING`, which needs Linux 6.3.
    static func releaseThisThreads(through ringFD: Int32? = nil) {
        guard count.load(ordering: .relaxed) > 0 else { return }
        let me = Syscall.threadToken
        let mine = lock.withLock { () -> [Int32] in
            let mine = guarded.notes.filter { $0.thread == me }.map(\.index)
            guarded.notes.removeAll { $0.thread == me }
            count.subtract(mine.count, ordering: .relaxed)
            return mine
        }
        for index in mine {
            // The slot still holds the dropped ring (nothing else can take an occupied slot), so
            // naming it by index reaches that ring and removes this thread's reference to it.
            var update = ResourceUpdate()
            update.offset = UInt32(index)
            if let ringFD,
                (try? Syscall.register(
                    ringFD, opcode: RegisterOpcode.unregisterRingFDs.rawValue, argument: &update, count: 1)) != nil
            {
                continue
            }
            _ = try? Syscall.register(
                index, opcode: RegisterOpcode.unregisterRingFDs.rawValue | useRegisteredRing, argument: &update,
                count: 1)
        }
    }
}
