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

    /// Completions the kernel had to hold in its overflow list are brought in by
    /// `forEachCompletion`, which counts each time it found some there.
    @Test func overflowFlushesAreCounted() throws {
        var options = RingOptions()
        options.completionEntries = 4
        var ring = try Ring(entries: 4, options: options)
        for round in 0..<2 {
            for index in 0..<4 {
                let pushed = ring.push(.nop().userData(UInt64(round * 4 + index)))
                #expect(pushed)
            }
            try ring.submit()  // NOPs complete inline: the second four find the CQ full
        }
        let overflowing = ring.submissionRingFlags.contains(.cqOverflow)
        #expect(overflowing, "four completions wait in the overflow list")
        var got: [UInt64] = []
        ring.forEachCompletion { got.append($0.userData) }
        #expect(got == Array(0..<8))
        let flushes = ring.overflowFlushes
        #expect(flushes == 1)
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

    /// `IORING_NOP_CQE32` (in the NOP's op flags): the kernel posts the entry's `off` and `addr`
    /// as the completion's two extra words (io_uring/nop.c). Distinct values in every entry and
    /// several completions in a row, so a reader that takes entries as 16 bytes (wrong words,
    /// wrong stride) or drops the extra words fails.
    static let nopCQE32: UInt32 = 1 << 5

    static func bigNop(_ id: UInt64) -> SubmissionEntry {
        var entry = SubmissionEntry.nop().userData(id)
        entry.opFlags = nopCQE32
        entry.off = 0x1111_0000_0000_0000 | id
        entry.addr = 0x2222_0000_0000_0000 | (id << 8)
        return entry
    }

    @Test func cqe32CarriesExtraWords() throws {
        // IORING_NOP_CQE32 arrived with IORING_SETUP_CQE_MIXED (io_uring_setup(2): since 6.18).
        guard KernelOffers.setupFlag(.cqeMixed, since: "6.18") else { return }
        guard var ring = RingShape.all[3].make() else { return }
        for id in UInt64(1)...6 { ring.mustPush(Self.bigNop(id)) }
        let done = try ring.collect(6).sorted { $0.userData < $1.userData }
        if done.first?.result == -EINVAL {
            skip(.cqeMixed, "the kernel refuses IORING_NOP_CQE32 (Linux 6.18)")
            return
        }
        #expect(done.map(\.userData) == Array(1...6))
        for c in done {
            #expect(c.result == 0)
            #expect(
                c.extra1 == 0x1111_0000_0000_0000 | c.userData,
                "big_cqe[0] of \(c.userData): \(String(c.extra1, radix: 16))")
            #expect(
                c.extra2 == 0x2222_0000_0000_0000 | (c.userData << 8),
                "big_cqe[1] of \(c.userData): \(String(c.extra2, radix: 16))")
        }
    }

    /// `IORING_SETUP_CQE_MIXED`: 16- and 32-byte completions share one ring; a 32-byte one takes
    /// two slots and never wraps, so when one would start in the last slot the kernel pads that
    /// slot with an `IORING_CQE_F_SKIP` entry. Rounds of one small and three big NOPs through an
    /// 8-slot CQ (7 slots a round) move the start around the ring, so padding happens; every
    /// completion must come back once, in order, with its own extra words, and no padding entry
    /// may surface as a completion.
    @Test func mixedCompletionsDecodeBigSmallAndPadding() throws {
        guard KernelOffers.setupFlag(.cqeMixed, since: "6.18") else { return }
        var options = RingOptions(flags: .cqeMixed)
        options.completionEntries = 8
        let made: Ring?
        do {
            made = try Ring(entries: 4, options: options)
        } catch {
            skip(.cqeMixed, "the kernel refuses IORING_SETUP_CQE_MIXED: \(error)")
            return
        }
        guard var ring = made else { return }
        #expect(ring.completionCapacity == 8)
        var next: UInt64 = 1
        var got: [Completion] = []
        var paddingSeen = 0
        for _ in 0..<12 {
            ring.mustPush(.nop().userData(next))
            for id in next + 1...next + 3 { ring.mustPush(Self.bigNop(id)) }
            next += 4
            try ring.submitAndWait(4)
            // Look at the raw slots first: count the padding entries the kernel wrote.
            paddingSeen += rawSlotsFlagged(&ring, with: .skip)
            let before = got.count
            let deadline = ContinuousClock.now + .seconds(5)
            while got.count < before + 4 && ContinuousClock.now < deadline {
                ring.forEachCompletion { got.append($0) }
                if got.count < before + 4 { try ring.wait(for: 1, timeout: .milliseconds(50)) }
            }
        }
        #expect(got.map(\.userData) == Array(1..<next), "in order, each once, no padding entry delivered")
        for c in got {
            let big = c.userData % 4 != 1
            #expect(c.flags.contains(.big) == big, "\(c.userData): flags \(String(c.rawFlags, radix: 16))")
            #expect(!c.flags.contains(.skip))
            if big {
                #expect(c.extra1 == 0x1111_0000_0000_0000 | c.userData, "big_cqe[0] of \(c.userData)")
                #expect(c.extra2 == 0x2222_0000_0000_0000 | (c.userData << 8), "big_cqe[1] of \(c.userData)")
            } else {
                #expect(c.extra1 == 0 && c.extra2 == 0)
            }
        }
        #expect(paddingSeen > 0, "no IORING_CQE_F_SKIP padding was written: the wrap case was not exercised")
    }

    /// Counts the published, unread CQ slots whose flags word has `flag` (slot by slot, 16 bytes
    /// each, as a mixed ring lays them out; the second half of a big entry is skipped over).
    func rawSlotsFlagged(_ ring: inout Ring, with flag: CQEFlags) -> Int {
        let cq = ring.cq
        var index = cq.head.pointee.load(ordering: .relaxed)
        let end = cq.tail.pointee.load(ordering: .acquiring)
        var count = 0
        while index != end {
            let slot = cq.entries + Int((index & cq.mask) << cq.entryShift)
            let flags = slot.load(fromByteOffset: 12, as: UInt32.self)
            if flags & flag.rawValue != 0 { count += 1 }
            index &+= flags & CQEFlags.big.rawValue != 0 ? 2 : 1
        }
        return count
    }
}
