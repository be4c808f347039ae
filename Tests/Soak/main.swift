// ring-soak: data-integrity soak for every engine. Writes checksummed 4 KiB blocks (offset,
// generation and CRC32C in a header), rewrites random blocks with newer generations while
// cancelling a share of the writes at random moments, then reads every block back and checks it.
// A write that resumed with CancellationError must not have reached the file (the kernel never
// ran it); one that returned must have. Exit status 1 on any mismatch.
//
//   ring-soak [--engine all|io_uring,libaio,posix-aio] [--size MiB] [--rewrites N]
//             [--cancel-percent P] [--direct both|yes|no] [--minutes M]
//
// CI runs 256 MiB per engine (buffered and O_DIRECT); `--minutes` repeats rewrite + verify
// rounds until the time is up and prints totals, for long soaks.
import Glibc
import RingExec
import Synchronization
import SystemPackage

let blockSize = 4096

// MARK: CRC32C (Castagnoli), table-driven

let crcTable: [UInt32] = (0..<256).map { index in
    var crc = UInt32(index)
    for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    return crc
}

func crc32c(_ bytes: UnsafeRawBufferPointer, _ start: UInt32 = 0) -> UInt32 {
    var crc = ~start
    crcTable.withUnsafeBufferPointer { table in
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
    }
    return ~crc
}

// MARK: Blocks

/// Fills `block` for `offset` at `generation`: header (offset u64, generation u32, crc u32)
/// then a payload derived from both, so a stale or misplaced block cannot pass.
func fill(_ block: UnsafeMutableRawBufferPointer, offset: UInt64, generation: UInt32) {
    var state = offset ^ (UInt64(generation) << 40) ^ 0x9E37_79B9_7F4A_7C15
    for word in 2..<(blockSize / 8) {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        block.storeBytes(of: state, toByteOffset: word * 8, as: UInt64.self)
    }
    block.storeBytes(of: offset, toByteOffset: 0, as: UInt64.self)
    block.storeBytes(of: generation, toByteOffset: 8, as: UInt32.self)
    block.storeBytes(of: checksum(UnsafeRawBufferPointer(block)), toByteOffset: 12, as: UInt32.self)
}

func checksum(_ block: UnsafeRawBufferPointer) -> UInt32 {
    crc32c(UnsafeRawBufferPointer(rebasing: block[16...]), crc32c(UnsafeRawBufferPointer(rebasing: block[0..<12])))
}

/// nil when the block is intact, else what is wrong with it.
func check(_ block: UnsafeRawBufferPointer, offset: UInt64, allowed: ClosedRange<UInt32>) -> String? {
    let storedOffset = block.load(fromByteOffset: 0, as: UInt64.self)
    let generation = block.load(fromByteOffset: 8, as: UInt32.self)
    let crc = block.load(fromByteOffset: 12, as: UInt32.self)
    if storedOffset != offset { return "block at \(offset) holds offset \(storedOffset)" }
    if crc != checksum(block) { return "block at \(offset) fails its CRC32C" }
    if !allowed.contains(generation) { return "block at \(offset) has generation \(generation), expected \(allowed)" }
    return nil
}

// MARK: Options

struct Options: Sendable {
    var engines = EngineKind.allCases
    var sizeMiB = 256
    var rewrites: Int?
    var cancelPercent = 10
    var directModes = [false, true]
    var minutes: Double?
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = Array(CommandLine.arguments.dropFirst())
    while !arguments.isEmpty {
        let name = arguments.removeFirst()
        guard let value = arguments.first else {
            print("ring-soak: \(name) needs a value")
            exit(2)
        }
        arguments.removeFirst()
        switch name {
        case "--engine":
            options.engines = value == "all" ? EngineKind.allCases : value.split(separator: ",").compactMap { EngineKind(rawValue: String($0)) }
        case "--size": options.sizeMiB = Int(value) ?? options.sizeMiB
        case "--rewrites": options.rewrites = Int(value)
        case "--cancel-percent": options.cancelPercent = Int(value) ?? options.cancelPercent
        case "--direct": options.directModes = value == "yes" ? [true] : value == "no" ? [false] : [false, true]
        case "--minutes": options.minutes = Double(value)
        default:
            print("ring-soak: unknown option \(name)")
            exit(2)
        }
    }
    return options
}

// MARK: The soak

struct Totals: Sendable {
    var written = 0
    var read = 0
    var cancelled = 0
    var uncertain = 0
    var mismatches: [String] = []
}

/// Expected generation range of each block; one writer task owns each block.
final class Expectations: @unchecked Sendable {
    var low: [UInt32]
    var high: [UInt32]
    init(count: Int) {
        low = Array(repeating: 1, count: count)
        high = Array(repeating: 1, count: count)
    }
}

func soak(engine: EngineKind, direct: Bool, options: Options) async throws -> Totals {
    let (sizeMiB, rewrites, minutes, cancelPercent) = (options.sizeMiB, options.rewrites, options.minutes, options.cancelPercent)
    let executor = try RingExecutor(entries: 64, engine: .only(engine))
    defer { executor.shutdownGracefully() }
    let path = "/tmp/ring-soak-\(getpid()).dat"
    defer { unlink(path) }
    let fd = try FileDescriptor.open(
        path, .readWrite, options: direct ? [.create, .truncate, .direct] : [.create, .truncate], permissions: .ownerReadWrite)
    defer { try? fd.close() }
    let blocks = (sizeMiB << 20) / blockSize
    let workers = 32
    let expected = Expectations(count: blocks)
    let totalRewrites = rewrites ?? blocks
    let deadline = minutes.map { ContinuousClock.now + .seconds($0 * 60) }

    // Each worker owns blocks b with b % workers == worker, so no two writes race on a block.
    func eachWorker(_ body: @escaping @Sendable (Int) async throws -> Totals) async throws -> Totals {
        try await executor.run {
            try await withThrowingTaskGroup(of: Totals.self) { group in
                for worker in 0..<workers { group.addTask { try await body(worker) } }
                var sum = Totals()
                for try await part in group {
                    sum.written += part.written
                    sum.read += part.read
                    sum.cancelled += part.cancelled
                    sum.uncertain += part.uncertain
                    sum.mismatches += part.mismatches
                }
                return sum
            }
        }
    }

    // 1. Every block at generation 1.
    var totals = try await eachWorker { worker in
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
        defer { buffer.deallocate() }
        var part = Totals()
        for block in stride(from: worker, to: blocks, by: workers) {
            let offset = UInt64(block * blockSize)
            fill(buffer, offset: offset, generation: 1)
            let n = try await executor.write(fd, from: UnsafeRawBufferPointer(buffer), offset: offset)
            if n != blockSize { part.mismatches.append("short write at \(offset): \(n)") }
            part.written += n
        }
        return part
    }

    repeat {
        // 2. Rewrites with newer generations; some cancelled at random moments.
        let round = try await eachWorker { worker in
            var part = Totals()
            var random = SystemRandomNumberGenerator()
            let owned = stride(from: worker, to: blocks, by: workers).map { $0 }
            for _ in 0..<(totalRewrites / workers) {
                let block = owned.randomElement(using: &random)!
                let offset = UInt64(block * blockSize)
                let generation = expected.high[block] &+ 1
                let cancel = Int.random(in: 0..<100, using: &random) < cancelPercent
                let write = Task {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
                    defer { buffer.deallocate() }  // after the kernel is done, even when cancelled
                    fill(buffer, offset: offset, generation: generation)
                    return try await executor.write(fd, from: UnsafeRawBufferPointer(buffer), offset: offset)
                }
                if cancel {
                    for _ in 0..<Int.random(in: 0...2, using: &random) { await Task.yield() }
                    write.cancel()
                }
                do {
                    let n = try await write.value
                    if n == blockSize {
                        expected.low[block] = generation
                        expected.high[block] = generation
                        part.written += n
                    } else {
                        part.mismatches.append("short write at \(offset): \(n)")
                    }
                } catch is CancellationError {
                    part.cancelled += 1  // the kernel never ran it: the old generation stays
                } catch {
                    // Interrupted while running: either generation may be on disk, intact.
                    expected.high[block] = generation
                    part.uncertain += 1
                }
            }
            return part
        }
        totals.written += round.written
        totals.cancelled += round.cancelled
        totals.uncertain += round.uncertain
        totals.mismatches += round.mismatches

        // 3. Read every block back and check it.
        let verify = try await eachWorker { worker in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
            defer { buffer.deallocate() }
            var part = Totals()
            for block in stride(from: worker, to: blocks, by: workers) {
                let offset = UInt64(block * blockSize)
                let n = try await executor.read(fd, into: buffer, offset: offset)
                part.read += n
                if n != blockSize {
                    part.mismatches.append("short read at \(offset): \(n)")
                } else if let problem = check(UnsafeRawBufferPointer(buffer), offset: offset, allowed: expected.low[block]...expected.high[block]) {
                    part.mismatches.append(problem)
                }
            }
            return part
        }
        totals.read += verify.read
        totals.mismatches += verify.mismatches
    } while deadline.map { ContinuousClock.now < $0 } ?? false
    return totals
}

func run(_ options: Options) async -> Int32 {
    var failed = false
    for engine in options.engines {
        for direct in options.directModes {
            let label = "\(engine) \(direct ? "O_DIRECT" : "buffered")"
            do {
                let start = ContinuousClock.now
                let totals = try await soak(engine: engine, direct: direct, options: options)
                let seconds = Double((ContinuousClock.now - start).components.seconds)
                print(
                    "\(label): wrote \(totals.written >> 20) MiB, read \(totals.read >> 20) MiB, \(totals.cancelled) writes cancelled, "
                        + "\(totals.uncertain) interrupted, \(totals.mismatches.count) mismatches (\(Int(seconds)) s)")
                for problem in totals.mismatches.prefix(10) { print("  \(problem)") }
                if !totals.mismatches.isEmpty { failed = true }
            } catch EngineError.unavailable(_, let reason) {
                print("\(label): SKIP, engine unavailable: \(reason)")
            } catch {
                print("\(label): error \(error)")
                failed = true
            }
        }
    }
    return failed ? 1 : 0
}

let status = Atomic<Int32>(-1)
let options = parseOptions()
Task.detached {
    status.store(await run(options), ordering: .releasing)
}
while status.load(ordering: .acquiring) < 0 { usleep(10_000) }
exit(status.load(ordering: .acquiring))
