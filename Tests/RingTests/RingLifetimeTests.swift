import Glibc
import Synchronization
import SystemPackage
import Testing

@testable import Ring

/// Regression tests for the ring core's lifetime and identity holes: a `Ring` moved between
/// threads, dropped off its thread, outlived by its `BufferRing`, waiting under signals.
@Suite(.timeLimit(.minutes(1))) struct RingLifetimeTests {
    /// Hands a ring from one thread to another.
    final class RingBox: @unchecked Sendable {
        var ring: Ring?
        var results: [String: Int64] = [:]
    }

    /// Runs `body` on a new thread and joins it; returns its `pthread_t`. With `stack`, the
    /// thread runs on that caller-owned memory: glibc then puts the thread's descriptor, whose
    /// address is the `pthread_t`, at a fixed place at the top of the given stack, so two threads
    /// started one after the other on the same stack get the same id. (Without a stack, reuse
    /// depends on glibc's cache of joined threads' stacks, which other tests' threads, created in
    /// parallel, may take first.)
    @discardableResult
    static func onNewThread(
        stack: UnsafeMutableRawBufferPointer? = nil, _ body: @escaping @Sendable () -> Void
    ) -> pthread_t {
        let thread = startThread(stack: stack, body)
        pthread_join(thread, nil)
        return thread
    }

    /// Starts `body` on a new joinable thread, on `stack` if given.
    static func startThread(
        stack: UnsafeMutableRawBufferPointer? = nil, _ body: @escaping @Sendable () -> Void
    ) -> pthread_t {
        final class Start: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if let stack {
            let set = pthread_attr_setstack(&attributes, stack.baseAddress, stack.count)
            precondition(set == 0, "pthread_attr_setstack failed: \(set)")
        }
        let start = Unmanaged.passRetained(Start(body))
        var thread = pthread_t()
        let created = pthread_create(
            &thread, &attributes,
            { raw in
                Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            }, start.toOpaque())
        precondition(created == 0, "pthread_create failed: \(created)")
        return thread
    }

    static func registeredOptions() -> RingOptions {
        var options = RingOptions()
        options.registerRingFD = true
        return options
    }

    /// Bug: the ring decided "am I on my registering thread" with `pthread_equal`. A ring whose
    /// thread had exited, used from a new thread with the same `pthread_t`, entered that thread's
    /// registered slot — another ring — and its deinit unregistered the other ring's slot.
    @Test func ringUsedOnAThreadWithAReusedIDEntersItselfAndSparesThatThreadsRing() throws {
        let box = RingBox()
        // Both threads run on this stack, one after the other, so they share one id. It outlives
        // both (joined before it is freed).
        let stackSize = 1 << 20
        let stack = UnsafeMutableRawBufferPointer.allocate(byteCount: stackSize, alignment: 4096)
        defer { stack.deallocate() }
        let first = Self.onNewThread(stack: stack) {
            box.ring = try? Ring(entries: 8, options: Self.registeredOptions())
            box.results["registeredOnFirst"] = box.ring?.usesRegisteredRingFD == true ? 1 : 0
        }
        #expect(box.results["registeredOnFirst"] == 1, "this kernel registers ring fds (5.18+)")
        Self.onNewThread(stack: stack) {
            guard pthread_equal(pthread_self(), first) != 0 else { return }
            box.results["reused"] = 1
            guard var other = try? Ring(entries: 8, options: Self.registeredOptions()),
                var moved = box.ring.take()
            else { return }
            box.results["movedUsesRegistered"] = moved.usesRegisteredRingFD ? 1 : 0
            // A NOP on the moved ring must complete on that ring, not vanish into `other`.
            _ = moved.push(.nop().userData(1))
            _ = try? moved.submitAndWait(1, timeout: .seconds(2))
            box.results["movedCompleted"] = Int64(moved.nextCompletion()?.userData ?? 0)
            box.results["otherCompletions"] = Int64(other.readyCompletions)
            _ = consume moved  // must not unregister `other`'s slot
            _ = other.push(.nop().userData(2))
            do {
                try other.submitAndWait(1, timeout: .seconds(2))
                box.results["otherCompleted"] = Int64(other.nextCompletion()?.userData ?? 0)
            } catch let error as Errno {
                box.results["otherError"] = Int64(error.rawValue)
            } catch {
                box.results["otherError"] = -1
            }
        }
        try #require(box.results["reused"] == 1, "one stack, two threads: one id")
        #expect(box.results["movedUsesRegistered"] == 0, "a different thread, whatever its pthread_t")
        #expect(box.results["movedCompleted"] == 1, "the NOP completed on its own ring")
        #expect(box.results["otherCompletions"] == 0, "nothing leaked into the new thread's ring")
        #expect(box.results["otherError"] == nil, "the new thread's ring kept its registration")
        #expect(box.results["otherCompleted"] == 2)
    }

    /// Bug: a ring dropped on a thread other than the one that registered it stayed alive in the
    /// kernel (the registration holds it), so an armed read went on consuming data nobody would
    /// ever see. Dropping a ring anywhere must end its requests.
    @Test(arguments: [false, true])
    func ringDroppedOnAnotherThreadNoLongerConsumesData(registered: Bool) throws {
        let pipe = try TestPipe()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
        defer { buffer.deallocate() }  // after the kernel is done: the ring is gone by then
        var options = RingOptions()
        options.registerRingFD = registered
        var ring = try Ring(entries: 8, options: options)
        let pushed = ring.push(.read(pipe.read, into: buffer, offset: SubmissionEntry.currentPosition).userData(1))
        let submitted = try ring.submit()
        #expect(pushed && submitted == 1)
        let box = RingBox()
        box.ring = consume ring
        Self.onNewThread { _ = box.ring.take() }
        try writeAll(pipe.write, [42])
        // Non-blocking from here on: a byte taken by the dropped ring fails the test (EAGAIN)
        // instead of hanging it.
        _ = fcntl(pipe.read.rawValue, F_SETFL, O_NONBLOCK)
        #expect(try readSome(pipe.read, 1) == [42], "the dropped ring's read must not take the byte")
    }

    /// A thread's registered-ring table has 16 slots. Rings registered here and dropped on other
    /// threads must give their slots back (through this thread's next `Ring` call), or the 17th
    /// ring could no longer register.
    @Test func registrationsOfRingsDroppedElsewhereAreReleasedByTheirThread() throws {
        let box = RingBox()
        Self.onNewThread {
            var registered: Int64 = 0
            for _ in 0..<20 {
                guard let ring = try? Ring(entries: 4, options: Self.registeredOptions()) else { return }
                if ring.usesRegisteredRingFD { registered += 1 }
                box.ring = consume ring
                Self.onNewThread { _ = box.ring.take() }
            }
            box.results["registered"] = registered
        }
        #expect(box.results["registered"] == 20)
    }

    /// A ring whose registering thread has exited leaves no note behind (the kernel dropped that
    /// thread's registrations when it exited): the table of notes cannot grow without bound.
    @Test func ringsOfExitedThreadsLeaveNoNotes() throws {
        let box = RingBox()
        var threads: [UInt64] = []
        for _ in 0..<20 {
            Self.onNewThread { box.ring = try? Ring(entries: 4, options: Self.registeredOptions()) }
            guard let ring = box.ring.take() else {
                Issue.record("no ring was created")
                return
            }
            #expect(ring.registeredIndex >= 0)
            threads.append(ring.registeringThread)
            _ = consume ring  // dropped here, after its registering thread exited
        }
        #expect(threads.map(OrphanedRingRegistrations.pending(for:)) == Array(repeating: 0, count: 20))
    }

    /// Bug: `wait(for:timeout:)` restarted its whole relative timeout after every EINTR, so a
    /// signal every few milliseconds made a 100 ms wait last as long as the signals kept coming.
    @Test func timedWaitKeepsItsDeadlineUnderASignalStorm() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: the wait sees EINTR
        sigaction(SIGUSR2, &action, nil)
        final class Shared: @unchecked Sendable {
            let thread = Atomic<UInt>(0)
            let finished = Atomic<Bool>(false)
            var error: Errno? = nil
        }
        let shared = Shared()
        let waiter = Self.startThread {
            // Threads inherit their creator's mask, and the test runner's workers block signals.
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGUSR2)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            shared.thread.store(UInt(pthread_self()), ordering: .releasing)
            do {
                var ring = try Ring(entries: 4)
                try ring.wait(for: 1, timeout: .milliseconds(100))  // nothing will complete
            } catch {
                shared.error = error as? Errno
            }
            shared.finished.store(true, ordering: .releasing)
        }
        defer { pthread_join(waiter, nil) }
        while shared.thread.load(ordering: .acquiring) == 0 { sched_yield() }
        let target = pthread_t(shared.thread.load(ordering: .acquiring))
        // Signal every 2 ms for up to 5 s; stop as soon as the wait returns.
        var signals = 0
        while !shared.finished.load(ordering: .acquiring) && signals < 2500 {
            pthread_kill(target, SIGUSR2)
            signals += 1
            usleep(2000)
        }
        let endedDuringStorm = shared.finished.load(ordering: .acquiring)
        while !shared.finished.load(ordering: .acquiring) { usleep(1000) }
        #expect(shared.error == nil)
        #expect(endedDuringStorm, "a 100 ms wait outlasted \(signals) signals 2 ms apart")
    }

    /// Bug: `BufferRing` unregistered by the ring's fd number. Once the ring was dropped and the
    /// number reused by another ring, the stale buffer ring removed the other ring's group.
    @Test func bufferRingOutlivingItsRingLeavesTheNextRingWithTheSameFDAlone() throws {
        var attempts = 0
        while attempts < 20 {
            attempts += 1
            let first = try Ring(entries: 8)
            let number = first.fd.rawValue
            var stale: BufferRing? = try BufferRing(ring: first, group: 7, count: 4, bufferSize: 16)
            _ = consume first
            var second = try Ring(entries: 8)
            guard second.fd.rawValue == number else { stale = nil; continue }  // another test took it
            let buffers = try BufferRing(ring: second, group: 7, count: 4, bufferSize: 16)
            stale = nil  // must unregister group 7 of the first ring, not of `second`
            _ = stale
            let pair = try SocketPair()
            try writeAll(pair.a, [1, 2, 3])
            let done = try second.run(.recv(pair.b, bufferGroup: 7))
            #expect(done.result == 3, "the second ring's group 7 must still be registered")
            #expect(buffers.bytes(of: done).map(Array.init) == [1, 2, 3])
            return
        }
        Issue.record("no ring got the dropped ring's fd number back in 20 tries")
    }

    /// Bug: with incremental consumption (`IOU_PBUF_RING_INC`) one buffer serves several
    /// completions, but `bytes(of:)` always started at the buffer's beginning, so the second
    /// receive returned the first one's bytes.
    @Test func incrementalBufferCompletionsEachReturnTheirOwnBytes() throws {
        // No probe bit: a kernel before 6.12 refuses the registration with EINVAL
        // (io_uring_register_buf_ring(3): IOU_PBUF_RING_INC, available since 6.12).
        guard KernelOffers.release(atLeast: 6, 12, for: "IOU_PBUF_RING_INC (incremental buffer consumption)") else {
            return
        }
        var ring = try Ring(entries: 8)
        var buffers = try BufferRing(ring: ring, group: 5, count: 1, bufferSize: 64, incremental: true)
        let pair = try SocketPair()
        try writeAll(pair.a, Array("abc".utf8))
        let first = try ring.run(.recv(pair.b, bufferGroup: 5))
        try writeAll(pair.a, Array("defg".utf8))
        let second = try ring.run(.recv(pair.b, bufferGroup: 5))
        #expect(first.flags.contains(.bufferMore), "the 64-byte buffer is only partly used")
        try #require(first.bufferID != nil && second.bufferID == first.bufferID, "both from the one buffer")
        #expect(buffers.bytes(of: first).map(Array.init) == Array("abc".utf8))
        #expect(buffers.bytes(of: second).map(Array.init) == Array("defg".utf8))
        // Given back, the buffer starts over.
        buffers.recycle(first.bufferID!)
        try writeAll(pair.a, Array("hi".utf8))
        let third = try ring.run(.recv(pair.b, bufferGroup: 5))
        #expect(buffers.bytes(of: third).map(Array.init) == Array("hi".utf8))
    }

    /// Bug: `messageRing(completionFlags:)` left out `IORING_MSG_RING_FLAGS_PASS`, so any
    /// non-zero flags made the request fail with EINVAL.
    @Test func messageRingHandsItsCompletionFlagsToTheTarget() throws {
        // No probe bit: before 6.3 the kernel refuses the flag with EINVAL.
        guard KernelOffers.release(atLeast: 6, 3, for: "IORING_MSG_RING_FLAGS_PASS") else { return }
        var source = try Ring(entries: 8)
        var target = try Ring(entries: 8)
        let flags: UInt32 = 1 << 12  // no meaning to the kernel: passed through as is
        let sent = try source.run(.messageRing(target.fd, result: 5, userData: 9, completionFlags: flags))
        #expect(sent.result == 0)
        let posted = try target.collect(1)
        #expect(posted.first?.userData == 9)
        #expect(posted.first?.result == 5)
        #expect(posted.first?.rawFlags == flags)
    }

    /// A resize whose new mappings fail after the kernel swapped the rings must not leave a ring
    /// that silently submits into stale memory: it says so, and later calls fail with EBADFD.
    @Test func resizeThatCannotMapTheNewRingsLeavesTheRingHonestlyUnusable() throws {
        guard KernelOffers.setupFlag(.noSQArray, since: "6.6"),
            KernelOffers.register(.registerResizeRings, since: "6.13")
        else { return }
        var ring: Ring
        do {
            ring = try Ring(entries: 8, options: RingOptions(flags: [.singleIssuer, .deferTaskRun, .noSQArray]))
        } catch {
            try #require(Bool(false), "needs DEFER_TASKRUN and NO_SQARRAY (6.6+): \(error)")
            return
        }
        ring.failNextResizeMapping = true
        var thrown: Errno? = nil
        do { try ring.resize(entries: 32) } catch { thrown = error }
        #expect(thrown == .noMemory)
        _ = ring.push(.nop().userData(1))
        var later: Errno? = nil
        do { try ring.submitAndWait(1, timeout: .seconds(1)) } catch { later = error }
        #expect(later == Errno(rawValue: EBADFD))
    }
}
