import Synchronization
import Testing

@testable import Ring

/// Tier 1: the SQ/CQ index logic over plain memory standing in for the kernel's side, including
/// the wrap of the free-running 32-bit indices.
struct SimulatedRing: ~Copyable {
    let memory: UnsafeMutableRawPointer
    let sqes: UnsafeMutableRawPointer
    let layout: RingLayout
    static let size = 4096

    init(sqEntries: UInt32 = 8, cqEntries: UInt32 = 16, start: UInt32) {
        var p = RingParameters()
        p.sqEntries = sqEntries
        p.cqEntries = cqEntries
        p.features = Features.singleMmap.rawValue
        p.sqOffsets.head = 0; p.sqOffsets.tail = 4; p.sqOffsets.ringMask = 8; p.sqOffsets.ringEntries = 12
        p.sqOffsets.flags = 16; p.sqOffsets.dropped = 20; p.sqOffsets.array = 1024
        p.cqOffsets.head = 64; p.cqOffsets.tail = 68; p.cqOffsets.ringMask = 72; p.cqOffsets.ringEntries = 76
        p.cqOffsets.overflow = 80; p.cqOffsets.flags = 84; p.cqOffsets.cqes = 2048
        layout = try! RingLayout(p)
        memory = UnsafeMutableRawPointer.allocate(byteCount: Self.size, alignment: 64)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: Self.size)
        sqes = UnsafeMutableRawPointer.allocate(byteCount: Int(sqEntries) * 64, alignment: 64)
        sqes.initializeMemory(as: UInt8.self, repeating: 0, count: Int(sqEntries) * 64)
        for offset in [0, 4, 64, 68] { memory.storeBytes(of: start, toByteOffset: offset, as: UInt32.self) }
    }

    deinit {
        memory.deallocate()
        sqes.deallocate()
    }

    func word(_ offset: Int) -> UInt32 { memory.load(fromByteOffset: offset, as: UInt32.self) }
    func setWord(_ offset: Int, _ value: UInt32) { memory.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }

    /// The kernel's side: post a CQE at the tail and advance it.
    func post(userData: UInt64, result: Int32) {
        let tail = word(68)
        let slot = memory + 2048 + Int(tail & (layout.cqEntries - 1)) * 16
        slot.storeBytes(of: userData, as: UInt64.self)
        slot.storeBytes(of: result, toByteOffset: 8, as: Int32.self)
        slot.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        setWord(68, tail &+ 1)
    }
}

@Suite(.timeLimit(.minutes(1))) struct IndexArithmeticTests {
    @Test(arguments: [UInt32(0), UInt32.max - 4, UInt32.max, UInt32(1) << 31])
    func submissionQueueFillsAndWraps(start: UInt32) {
        let sim = SimulatedRing(start: start)
        var sq = SubmissionQueue(ring: sim.memory, sqes: sim.sqes, layout: sim.layout)
        #expect(sq.space == 8)
        var slots: [UnsafeMutableRawPointer] = []
        while let slot = sq.nextSlot() { slots.append(slot) }
        #expect(slots.count == 8, "a full SQ reports itself instead of overwriting")
        #expect(sq.nextSlot() == nil)
        // Slots follow index & mask from the starting tail.
        for (i, slot) in slots.enumerated() {
            #expect(slot == sim.sqes + Int((start &+ UInt32(i)) & 7) * 64)
        }
        #expect(sq.flush() == 8)
        #expect(sim.word(4) == start &+ 8)
        // The kernel consumes 3: three slots free up, in order.
        sim.setWord(0, start &+ 3)
        #expect(sq.space == 3)
        let next = sq.nextSlot()
        #expect(next == sim.sqes + Int((start &+ 8) & 7) * 64)
        // The index array is the identity map.
        for i in 0..<8 { #expect(sim.word(1024 + 4 * i) == UInt32(i)) }
    }

    @Test(arguments: [UInt32(0), UInt32.max - 2, UInt32.max])
    func completionQueueDrainsInOrderAcrossWrap(start: UInt32) {
        let sim = SimulatedRing(start: start)
        var cq = CompletionQueue(ring: sim.memory, layout: sim.layout, mixed: false)
        for i in 0..<6 { sim.post(userData: UInt64(i), result: Int32(i) * 10) }
        #expect(cq.ready == 6)
        var seen: [UInt64] = []
        let n = cq.drain(limit: 4) { seen.append($0.userData) }
        #expect(n == 4)
        #expect(seen == [0, 1, 2, 3])
        #expect(sim.word(64) == start &+ 4, "head is stored once after the batch")
        _ = cq.drain(limit: .max) { seen.append($0.userData) }
        #expect(seen == [0, 1, 2, 3, 4, 5])
        #expect(cq.ready == 0)
        #expect(cq.drain(limit: .max) { _ in Issue.record("nothing is ready") } == 0)
    }

    /// `IORING_SETUP_CQE_MIXED` in the simulated ring, posted as the kernel posts: a 32-byte
    /// entry takes two 16-byte slots and never wraps; when it would start in the last slot, that
    /// slot gets an `IORING_CQE_F_SKIP` padding entry first. Across the ring's end and the
    /// 32-bit index wrap, with partial drains: every entry once, in order, with its extra words,
    /// no padding delivered, and the head advanced past every slot read.
    @Test(arguments: [UInt32(0), UInt32.max - 6, UInt32.max - 1, UInt32.max])
    func mixedCompletionQueueDecodesBigSmallAndPadding(start: UInt32) {
        let sim = SimulatedRing(cqEntries: 8, start: start)
        var cq = CompletionQueue(ring: sim.memory, layout: sim.layout, mixed: true)
        let mask = sim.layout.cqEntries - 1
        var paddings = 0
        func slot(_ index: UInt32) -> UnsafeMutableRawPointer { sim.memory + 2048 + Int(index & mask) * 16 }
        func post(_ id: UInt64, big: Bool) {
            var tail = sim.word(68)
            if big && tail & mask == mask {  // would wrap: pad the last slot
                slot(tail).storeBytes(of: UInt64(0), as: UInt64.self)
                slot(tail).storeBytes(of: Int32(0), toByteOffset: 8, as: Int32.self)
                slot(tail).storeBytes(of: CQEFlags.skip.rawValue, toByteOffset: 12, as: UInt32.self)
                tail &+= 1
                paddings += 1
            }
            slot(tail).storeBytes(of: id, as: UInt64.self)
            slot(tail).storeBytes(of: Int32(truncatingIfNeeded: id), toByteOffset: 8, as: Int32.self)
            slot(tail).storeBytes(of: big ? CQEFlags.big.rawValue : 0, toByteOffset: 12, as: UInt32.self)
            if big {
                slot(tail &+ 1).storeBytes(of: id &* 3, as: UInt64.self)
                slot(tail &+ 1).storeBytes(of: id &* 5, toByteOffset: 8, as: UInt64.self)
                tail &+= 2
            } else {
                tail &+= 1
            }
            sim.setWord(68, tail)
        }
        var received: [Completion] = []
        var id: UInt64 = 1
        for round in 0..<6 {
            // Small, big, big (5 slots, plus padding when a big one meets the end): at most 6 of
            // the 8 slots, and everything posted is drained before the next round.
            post(id, big: false)
            post(id + 1, big: true)
            post(id + 2, big: true)
            id += 3
            let limit = round % 2 == 0 ? 1 : .max  // a partial drain first on even rounds
            _ = cq.drain(limit: limit) { received.append($0) }
            _ = cq.drain(limit: .max) { received.append($0) }
            #expect(sim.word(64) == sim.word(68), "round \(round): the head passes every slot, padding included")
        }
        #expect(paddings > 0, "the rounds never met the ring's end with a big entry")
        #expect(received.map(\.userData) == Array(1..<id))
        for c in received {
            let big = c.userData % 3 != 1
            #expect(c.result == Int32(truncatingIfNeeded: c.userData))
            #expect(c.flags.contains(.big) == big)
            #expect(c.extra1 == (big ? c.userData &* 3 : 0) && c.extra2 == (big ? c.userData &* 5 : 0), "\(c)")
        }
    }

    /// A long random walk against a model queue: nothing lost, reordered or read twice.
    @Test func randomWalkMatchesModel() {
        var rng = SplitMix(seed: 0x5EED)
        for start in [UInt32.max - 100, 0, 1 << 31] {
            let sim = SimulatedRing(start: start)
            var sq = SubmissionQueue(ring: sim.memory, sqes: sim.sqes, layout: sim.layout)
            var cq = CompletionQueue(ring: sim.memory, layout: sim.layout, mixed: false)
            var nextID: UInt64 = 0
            var inKernelSQ: [UInt64] = []  // ids published, not consumed
            var inFlight: [UInt64] = []  // consumed by the kernel, not yet completed
            var expected: [UInt64] = []  // completion order
            var received: [UInt64] = []
            for _ in 0..<2000 {
                switch rng.next() % 4 {
                case 0:  // prepare some
                    for _ in 0..<(rng.next() % 5) {
                        guard let slot = sq.nextSlot() else { break }
                        slot.storeBytes(of: nextID, toByteOffset: 32, as: UInt64.self)
                        inKernelSQ.append(nextID)
                        nextID += 1
                    }
                    _ = sq.flush()
                case 1:  // kernel consumes some, reading ids from the slots at head
                    let k = Int(rng.next() % 4)
                    for _ in 0..<min(k, inKernelSQ.count) {
                        let head = sim.word(0)
                        let id = (sim.sqes + Int(head & 7) * 64).load(fromByteOffset: 32, as: UInt64.self)
                        #expect(id == inKernelSQ.removeFirst())
                        inFlight.append(id)
                        sim.setWord(0, head &+ 1)
                    }
                case 2:  // kernel completes some if the CQ has room
                    for _ in 0..<Int(rng.next() % 4) {
                        guard !inFlight.isEmpty, cq.ready < 16 else { break }
                        let id = inFlight.removeFirst()
                        sim.post(userData: id, result: 0)
                        expected.append(id)
                    }
                default:
                    _ = cq.drain(limit: Int(rng.next() % 6)) { received.append($0.userData) }
                }
            }
            _ = cq.drain(limit: .max) { received.append($0.userData) }
            #expect(received == expected)
        }
    }

    @Test func layoutRejectsInconsistentParameters() {
        var p = RingParameters()
        p.sqEntries = 6
        p.cqEntries = 16
        #expect(throws: RingLayout.Invalid.self) { try RingLayout(p) }
        p.sqEntries = 8
        p.cqEntries = 0
        #expect(throws: RingLayout.Invalid.self) { try RingLayout(p) }
        p.cqEntries = 16
        p.features = Features.singleMmap.rawValue
        p.sqOffsets.array = 256
        p.cqOffsets.cqes = 512
        p.sqOffsets.tail = 1_000_000  // far outside the mapping
        #expect(throws: RingLayout.Invalid.self) { try RingLayout(p) }
        p.sqOffsets.tail = 6  // inside, but not aligned
        #expect(throws: RingLayout.Invalid.self) { try RingLayout(p) }
        p.sqOffsets.tail = 4
        p.sqOffsets.array = 0  // overlapping the header words (what a resize reply says on 6.18)
        #expect(throws: RingLayout.Invalid.self) { try RingLayout(p) }
        p.sqOffsets.array = 256
        let layout = try? RingLayout(p)
        #expect(layout?.sqRingSize == 512 + 16 * 16)
        #expect(layout?.sqesSize == 8 * 64)
    }
}

/// A tiny deterministic generator for reproducible random walks.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
