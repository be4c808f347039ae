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
//
// Exit status: 0 when every engine run held its data; 1 on a mismatch or an error; 2 on a bad
// argument; 3 when an engine that was asked for cannot run here. An engine named with
// `--engine` must run; with `--engine all` (the default) an unavailable engine is skipped with
// its reason, unless RING_REQUIRE (as the tests read it: `all`, `-name`, engine names) requires it.
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
    /// Engines that must run: those named with --engine, else those RING_REQUIRE requires.
    var required: Set<EngineKind> = []
    var sizeMiB = 256
    var rewrites: Int?
    var cancelPercent = 10
    var directModes = [false, true]
    var minutes: Double?
}

let usage = """
    usage: ring-soak [--engine all|io_uring,libaio,posix-aio] [--size MiB] [--rewrites N]
                     [--cancel-percent 0-100] [--direct both|yes|no] [--minutes M] [--version]
    """

/// A usage error: the message and the usage on standard error, exit status 2.
func fail(_ message: String) -> Never {
    _ = try? FileDescriptor.standardError.writeAll("ring-soak: \(message)\n\(usage)\n".utf8)
    exit(2)
}

/// The engines RING_REQUIRE requires (its other needs are the tests' business).
func requiredByEnvironment() -> Set<EngineKind> {
    var required: Set<EngineKind> = []
    let text = getenv("RING_REQUIRE").map { String(cString: $0) } ?? ""
    for item in text.split(separator: ",") {
        let removing = item.hasPrefix("-")
        let name = removing ? String(item.dropFirst()) : String(item)
        let named: Set<EngineKind> =
            name == "all" ? Set(EngineKind.allCases) : EngineKind(rawValue: name).map { [$0] } ?? []
        if removing { required.subtract(named) } else { required.formUnion(named) }
    }
    return required
}

func parseOptions() -> Options {
    var options = Options()
    var explicitEngines = false
    var arguments = Array(CommandLine.arguments.dropFirst())
    while !arguments.isEmpty {
        let name = arguments.removeFirst()
        if name == "--help" || name == "-h" {
            print(usage)
            exit(0)
        }
        if name == "--version" {
            print(SwiftRing.version)
            exit(0)
        }
        guard let value = arguments.first else { fail("\(name) needs a value") }
        arguments.removeFirst()
        switch name {
        case "--engine":
            if value == "all" {
                options.engines = EngineKind.allCases
                explicitEngines = false
                continue
            }
            var engines: [EngineKind] = []
            for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                guard let engine = EngineKind(rawValue: String(part)) else {
                    fail(
                        "--engine: '\(part)' names no engine (\(EngineKind.allCases.map(\.rawValue).joined(separator: ", ")), or all)"
                    )
                }
                if !engines.contains(engine) { engines.append(engine) }
            }
            options.engines = engines
            explicitEngines = true
        case "--size":
            guard let size = Int(value), size > 0, size <= 1 << 20 else {
                fail("--size: '\(value)' is not a size in MiB (1 or more)")
            }
            options.sizeMiB = size
        case "--rewrites":
            guard let count = Int(value), count >= 0 else { fail("--rewrites: '\(value)' is not a count") }
            options.rewrites = count
        case "--cancel-percent":
            guard let percent = Int(value), (0...100).contains(percent) else {
                fail("--cancel-percent: '\(value)' is not 0 to 100")
            }
            options.cancelPercent = percent
        case "--direct":
            switch value {
            case "yes": options.directModes = [true]
            case "no": options.directModes = [false]
            case "both": options.directModes = [false, true]
            default: fail("--direct: '\(value)' is not both, yes or no")
            }
        case "--minutes":
            guard let minutes = Double(value), minutes > 0, minutes.isFinite else {
                fail("--minutes: '\(value)' is not a positive number")
            }
            options.minutes = minutes
        default:
            fail("unknown option \(name)")
        }
    }
    options.required = explicitEngines ? Set(options.engines) : requiredByEnvironment()
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
    let (sizeMiB, rewrites, minutes, cancelPercent) = (
        options.sizeMiB, options.rewrites, options.minutes, options.cancelPercent
    )
    let executor = try RingExecutor(entries: 64, engine: .only(engine))
    defer { executor.shutdownGracefully() }
    let path = "/tmp/ring-soak-\(getpid()).dat"
    defer { unlink(path) }
    let fd = try FileDescriptor.open(
        path, .readWrite, options: direct ? [.create, .truncate, .direct] : [.create, .truncate],
        permissions: .ownerReadWrite)
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
                } else if let problem = check(
                    UnsafeRawBufferPointer(buffer), offset: offset, allowed: expected.low[block]...expected.high[block])
                {
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
    var missing: [String] = []
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
                if options.required.contains(engine) {
                    print("\(label): FAILED, the \(engine) engine was asked for but is unavailable: \(reason)")
                    missing.append(label)
                } else {
                    print("\(label): SKIP, engine unavailable: \(reason)")
                }
            } catch {
                print("\(label): error \(error)")
                failed = true
            }
        }
    }
    if failed { return 1 }
    if !missing.isEmpty {
        print("ring-soak: did not run: \(missing.joined(separator: ", "))")
        return 3
    }
    return 0
}

let status = Atomic<Int32>(-1)
let options = parseOptions()
Task.detached {
    status.store(await run(options), ordering: .releasing)
}
while status.load(ordering: .acquiring) < 0 { usleep(10_000) }
exit(status.load(ordering: .acquiring))
