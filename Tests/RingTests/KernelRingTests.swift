import Glibc
import SystemPackage
import Testing

@testable import Ring

/// Tier 2: round trips through the real kernel, under every ring shape.
@Suite(.timeLimit(.minutes(1))) struct KernelRingTests {
    @Test(arguments: RingShape.all)
    func nopRoundTrip(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        ring.mustPush(.nop().userData(42))
        let completions = try ring.collect(1)
        #expect(completions == [Completion(userData: 42, result: 0, flags: 0)])
        #expect(ring.readyCompletions == 0)
        if shape.options.flags.contains(.cqe32) {
            #expect(ring.parameters.flags & SetupFlags.cqe32.rawValue != 0)
        }
    }

    @Test(arguments: RingShape.all)
    func writeThenRead(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        let file = try TemporaryFile()
        let data = pattern(count: 8192, seed: 7)
        let source = PinnedBytes(data)
        ring.mustPush(.write(file.fd, from: source.readOnly, offset: 4096).userData(1))
        let wrote = try ring.collect(1)
        #expect(wrote.first?.result == 8192)
        let target = PinnedBytes(count: 8192)
        ring.mustPush(.read(file.fd, into: target.buffer, offset: 4096).userData(2))
        let read = try ring.collect(1)
        #expect(read.first?.result == 8192)
        #expect(target.bytes == data)
        // A short read returns what is there; a read at EOF returns 0.
        let tail = PinnedBytes(count: 100)
        ring.mustPush(.read(file.fd, into: tail.buffer, offset: 12288 - 10).userData(3))
        ring.mustPush(.read(file.fd, into: tail.buffer, offset: 1 << 20).userData(4))
        let done = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(done.map(\.result) == [10, 0])
    }

    @Test(arguments: RingShape.all)
    func vectoredRoundTrip(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        let file = try TemporaryFile()
        let a = PinnedBytes(pattern(count: 1000, seed: 1)), b = PinnedBytes(pattern(count: 3000, seed: 2))
        let out = PinnedBytes(count: 2 * MemoryLayout<iovec>.stride)
        let outVecs = out.buffer.bindMemory(to: iovec.self)
        outVecs[0] = iovec(iov_base: a.buffer.baseAddress, iov_len: a.buffer.count)
        outVecs[1] = iovec(iov_base: b.buffer.baseAddress, iov_len: b.buffer.count)
        ring.mustPush(.writev(file.fd, UnsafeBufferPointer(outVecs), offset: 0).userData(1))
        let wrote = try ring.collect(1)
        #expect(wrote.first?.result == 4000)

        let x = PinnedBytes(count: 2500), y = PinnedBytes(count: 1500)
        let inp = PinnedBytes(count: 2 * MemoryLayout<iovec>.stride)
        let inVecs = inp.buffer.bindMemory(to: iovec.self)
        inVecs[0] = iovec(iov_base: x.buffer.baseAddress, iov_len: x.buffer.count)
        inVecs[1] = iovec(iov_base: y.buffer.baseAddress, iov_len: y.buffer.count)
        ring.mustPush(.readv(file.fd, UnsafeBufferPointer(inVecs), offset: 0).userData(2))
        let read = try ring.collect(1)
        #expect(read.first?.result == 4000)
        #expect(x.bytes + y.bytes == a.bytes + b.bytes)
    }

    @Test(arguments: RingShape.all)
    func fsyncAndDatasync(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        let file = try TemporaryFile(size: 4096)
        ring.mustPush(.fsync(file.fd).userData(1))
        ring.mustPush(.fsync(file.fd, flags: .dataSync).userData(2))
        let done = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(done.map(\.result) == [0, 0])
        // A bad fd is an error in the completion, not a thrown error, and the ring goes on.
        ring.mustPush(.fsync(FileDescriptor(rawValue: 1_000_000)).userData(3))
        let got3 = try ring.collect(1)
        #expect(got3.first?.error == .badFileDescriptor)
    }

    @Test(arguments: RingShape.all)
    func timeoutExpiresAndCounts(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        let short = Pinned(KernelTimespec(.milliseconds(5)))
        let long = Pinned(KernelTimespec(.seconds(30)))
        let start = ContinuousClock.now
        ring.mustPush(.timeout(short.pointer).userData(1))
        let expired = try ring.collect(1)
        #expect(expired.first?.result == -ETIME)
        #expect(ContinuousClock.now - start >= .milliseconds(4))
        // A count-based timeout completes with 0 once one other request has completed.
        ring.mustPush(.timeout(long.pointer, completionCount: 1).userData(2))
        ring.mustPush(.nop().userData(3))
        let done = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(done.map(\.result) == [0, 0])
    }

    @Test(arguments: RingShape.all)
    func cancelTimeoutByUserData(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        let long = Pinned(KernelTimespec(.seconds(30)))
        ring.mustPush(.timeout(long.pointer).userData(10))
        try ring.submit()
        ring.mustPush(.cancel(userData: 10).userData(11))
        let done = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(done.map(\.userData) == [10, 11])
        #expect(done.first?.result == -ECANCELED)
        #expect(done.last?.result == 0)
        // Cancelling it again finds nothing.
        ring.mustPush(.cancel(userData: 10).userData(12))
        let again = try ring.collect(1)
        #expect(again.first?.result == -ENOENT)
        // timeoutRemove cancels a timeout too.
        ring.mustPush(.timeout(long.pointer).userData(13))
        try ring.submit()
        ring.mustPush(.timeoutRemove(target: 13).userData(14))
        let removed = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(removed.map(\.result) == [-ECANCELED, 0])
    }

    @Test(arguments: RingShape.all)
    func batchLargerThanTheQueue(shape: RingShape) throws {
        guard var ring = shape.make(entries: 8) else { return }
        #expect(ring.submissionCapacity == 8)
        let total = 10_000
        var seen = [Bool](repeating: false, count: total)
        var next = 0, received = 0, fullSeen = false
        while received < total {
            while next < total {
                guard ring.push(.nop().userData(UInt64(next))) else { fullSeen = true; break }
                next += 1
            }
            if next > received {
                try ring.submitAndWait(1)
            } else {
                // Full, yet nothing left to complete: an SQPOLL thread posts a batch's
                // completions before it moves the SQ head, so we reaped them all while the head
                // still said "full". Waiting for a completion here hung (1 run in ~30); the head
                // catches up on its own.
                try ring.submit()
            }
            ring.forEachCompletion { c in
                let id = Int(c.userData)
                #expect(!seen[id], "completion \(id) delivered twice")
                seen[id] = true
                received += 1
            }
        }
        #expect(fullSeen, "an 8-entry SQ must report full during a 10,000-entry batch")
        #expect(seen.allSatisfy { $0 })
        #expect(ring.readyCompletions == 0)
    }

    @Test(arguments: RingShape.all, [2, 4])
    func completionOverflowLosesNothing(shape: RingShape, cqEntries: Int) throws {
        // A 2- or 4-entry CQ, 256 NOPs submitted before reaping anything: the kernel must keep
        // the overflow (IORING_FEAT_NODROP) and hand it back as we drain. That an overflow
        // happened at all is shown by IORING_SQ_CQ_OVERFLOW, which the kernel sets while its
        // overflow list is not empty; the CQ ring's overflow word counts only completions it
        // dropped, which NODROP never does, so it must stay 0.
        guard var ring = shape.make(entries: cqEntries, completionEntries: UInt32(cqEntries)) else { return }
        #expect(ring.features.contains(.noDrop))
        #expect(ring.completionCapacity == cqEntries)
        let total = 256
        var submitted = 0
        var got: [UInt64] = []
        var sawOverflowFlag = false
        while submitted < total {
            while submitted < total && ring.push(.nop().userData(UInt64(submitted))) { submitted += 1 }
            var busy = false
            do {
                try ring.submit()
            } catch {
                // Documented: EBUSY/EAGAIN mean "reap completions, then retry".
                guard error == .resourceBusy || error == .resourceTemporarilyUnavailable else { throw error }
                busy = true
            }
            if busy { ring.forEachCompletion { got.append($0.userData) } }
            // Let the SQ drain (SQPOLL consumes asynchronously).
            while ring.pendingSubmissions > 0 {
                try ring.submit()
                if ring.submissionRingFlags.contains(.cqOverflow) { sawOverflowFlag = true }
            }
            if ring.submissionRingFlags.contains(.cqOverflow) { sawOverflowFlag = true }
        }
        // Wait for everything to have completed (in the CQ or the kernel's overflow list).
        let deadline = ContinuousClock.now + .seconds(10)
        while got.count < total && ContinuousClock.now < deadline {
            if ring.submissionRingFlags.contains(.cqOverflow) { sawOverflowFlag = true }
            ring.forEachCompletion { got.append($0.userData) }
            if got.count < total { try ring.wait(for: 1, timeout: .milliseconds(50)) }
        }
        #expect(got.count == total)
        #expect(Set(got).count == total, "no completion duplicated")
        #expect(ring.droppedCompletions == 0)
        #expect(sawOverflowFlag, "IORING_SQ_CQ_OVERFLOW was never set: the CQ did not overflow, so nothing was proven")
    }

    @Test(arguments: RingShape.all)
    func linkedChainStopsAtFailure(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        // A failing fsync on a bad fd, linked to a NOP: the NOP is cancelled.
        ring.mustPush(.fsync(FileDescriptor(rawValue: 999_999)).userData(1).flags(.link))
        ring.mustPush(.nop().userData(2))
        let done = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(done.map(\.result) == [-EBADF, -ECANCELED])
        // A hard link runs the next one regardless.
        ring.mustPush(.fsync(FileDescriptor(rawValue: 999_999)).userData(3).flags(.hardLink))
        ring.mustPush(.nop().userData(4))
        let hard = try ring.collect(2).sorted { $0.userData < $1.userData }
        #expect(hard.map(\.result) == [-EBADF, 0])
    }

    @Test(arguments: RingShape.all)
    func unknownOpcodeFailsInItsCompletion(shape: RingShape) throws {
        guard var ring = shape.make() else { return }
        var bad = SubmissionEntry()
        bad.opcode = 250
        bad.userData = 9
        ring.mustPush(bad)
        let got6 = try ring.collect(1)
        #expect(got6.first?.result == -EINVAL)
        ring.mustPush(.nop().userData(10))
        let got7 = try ring.collect(1)
        #expect(got7.first?.result == 0, "the ring stays usable")
    }

    @Test func waitTimesOutWithoutError() throws {
        var ring = try Ring(entries: 4)
        let start = ContinuousClock.now
        try ring.wait(for: 1, timeout: .milliseconds(20))
        #expect(ContinuousClock.now - start >= .milliseconds(15))
        #expect(ring.readyCompletions == 0)
    }

    @Test func cqe32CarriesExtraWords() throws {
        guard var ring = RingShape.all[3].make() else { return }
        ring.mustPush(.nop().userData(1))
        let c = try ring.collect(1)
        #expect(c.first?.extra1 == 0 && c.first?.extra2 == 0)
    }
}
