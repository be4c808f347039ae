// Target 1: SQ/CQ index arithmetic. Plain memory stands in for the kernel side; a byte stream of
// operations (prepare N, publish, kernel consumes K, kernel posts M, reap up to L) runs from any
// starting index, including near 2^32, and is checked against a model queue: nothing lost,
// reordered or read twice, and a full SQ never hands out a slot.
import FuzzSupport
import Glibc
@testable import Ring

exit(runFuzzer { data, size in fuzzRingIndices(UnsafeRawPointer(data), size) })

/// The symbol libFuzzer's own tools look for; the driver above calls the same function.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    fuzzRingIndices(data, size)
}

func fuzzRingIndices(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let sqEntries = UInt32(1) << (input.next(UInt8.self) % 7)  // 1 ... 64
    let cqEntries = sqEntries << (1 + input.next(UInt8.self) % 2)
    let sqStart: UInt32 = input.next()
    let cqStart: UInt32 = input.next()

    var p = RingParameters()
    p.sqEntries = sqEntries
    p.cqEntries = cqEntries
    p.features = Features.singleMmap.rawValue
    p.sqOffsets.head = 0; p.sqOffsets.tail = 4; p.sqOffsets.ringMask = 8; p.sqOffsets.ringEntries = 12
    p.sqOffsets.flags = 16; p.sqOffsets.dropped = 20; p.sqOffsets.array = 64
    p.cqOffsets.head = 32; p.cqOffsets.tail = 36; p.cqOffsets.ringMask = 40; p.cqOffsets.ringEntries = 44
    p.cqOffsets.overflow = 48; p.cqOffsets.flags = 52; p.cqOffsets.cqes = 512
    guard let layout = try? RingLayout(p) else { fatalError("valid parameters rejected") }
    let memory = UnsafeMutableRawPointer.allocate(byteCount: layout.sqRingSize, alignment: 64)
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: layout.sqRingSize)
    let sqes = UnsafeMutableRawPointer.allocate(byteCount: layout.sqesSize, alignment: 64)
    sqes.initializeMemory(as: UInt8.self, repeating: 0, count: layout.sqesSize)
    defer { memory.deallocate(); sqes.deallocate() }
    func word(_ o: Int) -> UInt32 { memory.load(fromByteOffset: o, as: UInt32.self) }
    func setWord(_ o: Int, _ v: UInt32) { memory.storeBytes(of: v, toByteOffset: o, as: UInt32.self) }
    setWord(0, sqStart); setWord(4, sqStart); setWord(32, cqStart); setWord(36, cqStart)

    var sq = SubmissionQueue(ring: memory, sqes: sqes, layout: layout)
    var cq = CompletionQueue(ring: memory, layout: layout, mixed: false)
    var nextID: UInt64 = 1
    var handedOut: [UInt64] = []  // prepared, maybe not yet published
    var published = 0  // how many of handedOut the kernel may see
    var inFlight: [UInt64] = []
    var expected: [UInt64] = []
    var received: [UInt64] = []

    while !input.isEmpty {
        let op: UInt8 = input.next()
        let n = Int(input.next(UInt8.self) % 70)
        switch op % 5 {
        case 0:
            for _ in 0..<n {
                let free = Int(sqEntries) - handedOut.count
                guard let slot = sq.nextSlot() else {
                    check(free == 0, "SQ refused a slot with \(free) free")
                    break
                }
                check(free > 0, "SQ handed out a slot while full")
                slot.storeBytes(of: nextID, toByteOffset: 32, as: UInt64.self)
                handedOut.append(nextID)
                nextID += 1
            }
        case 1:
            let pending = sq.flush()
            published = handedOut.count
            check(Int(pending) == handedOut.count, "flush reports \(pending), model \(handedOut.count)")
            check(word(4) == sqStart &+ UInt32(truncatingIfNeeded: nextID - 1), "tail word mismatch")
        case 2:
            // The kernel consumes up to n published entries, in order, via the index array.
            for _ in 0..<min(n, published) {
                let head = word(0)
                let index = memory.load(fromByteOffset: 64 + Int(head & (sqEntries - 1)) * 4, as: UInt32.self)
                let id = (sqes + Int(index) * 64).load(fromByteOffset: 32, as: UInt64.self)
                check(id == handedOut.first, "kernel read \(id), model expected \(String(describing: handedOut.first))")
                handedOut.removeFirst()
                published -= 1
                inFlight.append(id)
                setWord(0, head &+ 1)
            }
        case 3:
            for _ in 0..<n {
                guard !inFlight.isEmpty, cq.ready < cqEntries else { break }
                let tail = word(36)
                let slot = memory + 512 + Int(tail & (cqEntries - 1)) * 16
                let id = inFlight.removeFirst()
                slot.storeBytes(of: id, as: UInt64.self)
                slot.storeBytes(of: Int32(truncatingIfNeeded: id), toByteOffset: 8, as: Int32.self)
                slot.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
                setWord(36, tail &+ 1)
                expected.append(id)
            }
        default:
            let before = received.count
            let got = cq.drain(limit: n) { c in
                check(c.result == Int32(truncatingIfNeeded: c.userData), "result does not match its entry")
                received.append(c.userData)
            }
            check(got == received.count - before && got <= n, "drain count mismatch")
        }
    }
    _ = cq.drain(limit: .max) { received.append($0.userData) }
    check(received == expected, "completions lost, duplicated or reordered")
    check(cq.ready == 0, "CQ not empty after a full drain")
    return 0
}
