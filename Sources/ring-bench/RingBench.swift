import ArgumentParser
import Foundation
import Glibc
import RingExec
import RingToolSupport

/// ring-bench: io_uring (raw ring and async executor), libaio and POSIX aio side by side, with
/// fio's numbers for the same parameters beside each row.
@main
struct RingBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring-bench",
        abstract: "Compare io_uring, libaio and POSIX aio (and fio) on the same file and parameters.",
        discussion: """
            With no arguments: 4 KiB random reads, O_DIRECT, queue depths 1/32/128, the raw ring plus \
            the async executor on io_uring, libaio and POSIX aio, with fio beside each row when it is \
            installed. Raw mode is the Ring API in a tight loop (io_uring only); async mode is tasks \
            awaiting RingExecutor operations (queue depth = tasks in flight). Engines carry the names \
            RingExec and ring-probe use: io_uring, libaio, posix-aio (posix is accepted too). Usage \
            errors exit 2, failed rows 1. --json prints one document (schema in README.md).
            """,
        version: SwiftRing.version)

    /// Usage errors exit 2, failures 1, messages on standard error (RingToolSupport).
    static func main() async { await runAsTool() }

    enum EngineOption: String, ExpressibleByArgument, CaseIterable {
        case io_uring, libaio, posixAIO = "posix-aio", all

        /// `posix`, the name this option once had, still selects POSIX aio.
        init?(argument: String) {
            if argument == "posix" {
                self = .posixAIO
            } else {
                self.init(rawValue: argument)
            }
        }
    }
    enum ModeOption: String, ExpressibleByArgument, CaseIterable {
        case raw, async, both
    }

    @Option(help: "Workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload = .randread
    @Option(help: "Engine: io_uring, libaio, posix-aio (or posix) or all.")
    var engine: EngineOption = .all
    @Option(help: "raw (Ring API, io_uring only), async (RingExecutor tasks) or both.")
    var mode: ModeOption = .both
    @Option(help: "Comma-separated queue depths, each a positive integer.")
    var qd: String = "1,32,128"
    @Option(help: "Block size in bytes.")
    var bs: Int = 4096
    @Flag(inversion: .prefixedNo, help: "O_DIRECT (default) or the page cache (--no-direct).")
    var direct = true
    @Option(help: "Use this file instead of a temporary one (it is read, and written by write workloads).")
    var file: String?
    @Option(help: "Size in MiB of the temporary file.")
    var size: Int = 256
    @Option(help: "Seconds per row.")
    var runtime: Double = 1.5
    @Option(help: "Stop a row after this many operations, if that comes first. (default: no limit)")
    var ops: Int?
    @Option(help: "Raw mode: completions to wait for per io_uring_enter (at most the queue depth).")
    var batch: Int = 1
    @Option(
        help: """
            Most new requests per system call: raw mode's own loop, and the executors' `submitBatch` \
            in async mode. (default: 8; raw mode on the page cache: a whole batch per call)
            """)
    var submitBatch: Int?
    @Option(help: "Async mode: executors in the group (one thread each).")
    var threads: Int = 1
    @Option(
        help: """
            Async mode, I/O workloads: requests per await through the batch API \
            (RingExecutor.perform), each queue depth a multiple of it. (default: 1, one read or write per await)
            """)
    var asyncBatch: Int = 1
    @Flag(
        help: """
            Async mode: each task's loop runs isolated to an actor pinned to its executor, in a task \
            without an executor preference (default: in a task that prefers the executor).
            """)
    var pinnedActor = false
    @Option(name: .customLong("rwmix-read"), help: "Read percentage of the mixed workload.")
    var rwmixRead: Int = 70
    @Flag(help: "Raw mode: an SQPOLL ring.")
    var sqpoll = false
    @Flag(help: "Raw mode: register the file (IOSQE_FIXED_FILE).")
    var fixedFiles = false
    @Flag(help: "Raw mode: register the buffers (READ_FIXED / WRITE_FIXED).")
    var fixedBuffers = false
    @Flag(inversion: .prefixedNo, help: "Run fio with the same parameters when it is on PATH.")
    var compareFio = true
    @Flag(help: "Run fio before (instead of after) each row, to see how much order matters (caches under the disk).")
    var fioFirst = false
    @Option(
        name: .customLong("repeat"),
        help: """
            Measure each row (and its fio run) this many times, alternating which goes first, and \
            report the median by IOPS: for noisy disks.
            """)
    var rounds: Int = 1
    @Flag(help: "Print JSON instead of the table.")
    var json = false
    @Flag(help: "Print a Markdown table instead of the text table.")
    var markdown = false
    @Option(help: "Also write an SVG chart of IOPS against queue depth to this path.")
    var svg: String?

    /// Every setting checked before anything runs; a `ValidationError` is a usage error (exit 2).
    func validate() throws {
        _ = try Self.parseDepths(qd)
        guard bs > 0 else { throw ValidationError("--bs must be a positive number of bytes, not \(bs)") }
        guard bs % 512 == 0 || !direct else {
            throw ValidationError("--bs must be a multiple of 512 with O_DIRECT, not \(bs) (or use --no-direct)")
        }
        guard bs <= 1 << 30 else { throw ValidationError("--bs must be at most 1 GiB, not \(bs)") }
        guard (1...(1 << 20)).contains(size) else {
            throw ValidationError("--size must be 1 to 1048576 MiB, not \(size)")
        }
        guard runtime.isFinite, runtime > 0 else {
            throw ValidationError("--runtime must be a positive number of seconds, not \(runtime)")
        }
        guard runtime <= 86_400 else {
            throw ValidationError("--runtime must be at most 86400 seconds, not \(runtime)")
        }
        if let ops, ops < 1 { throw ValidationError("--ops must be at least 1, not \(ops)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, not \(batch)") }
        guard (1...1024).contains(threads) else { throw ValidationError("--threads must be 1 to 1024, not \(threads)") }
        guard asyncBatch >= 1 else { throw ValidationError("--async-batch must be at least 1, not \(asyncBatch)") }
        if asyncBatch > 1 {
            guard workload.isIO else { throw ValidationError("--async-batch needs an I/O workload, not nop") }
            for depth in try Self.parseDepths(qd) where depth % asyncBatch != 0 {
                throw ValidationError("--qd \(depth) is not a multiple of --async-batch \(asyncBatch)")
            }
        }
        if pinnedActor && mode == .raw {
            throw ValidationError("--pinned-actor needs async rows (--mode async or both), not --mode raw")
        }
        if let submitBatch, submitBatch < 1 {
            throw ValidationError("--submit-batch must be at least 1, not \(submitBatch)")
        }
        guard (0...100).contains(rwmixRead) else {
            throw ValidationError("--rwmix-read is a percentage (0 to 100), not \(rwmixRead)")
        }
        guard rounds >= 1 else { throw ValidationError("--repeat must be at least 1, not \(rounds)") }
        guard !(json && markdown) else {
            throw ValidationError("--json and --markdown cannot be used together: choose one")
        }
        if let file, file.isEmpty { throw ValidationError("--file needs a path") }
    }

    /// `--qd 1,32,128`: every item a positive integer, none silently dropped.
    static func parseDepths(_ text: String) throws -> [Int] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        let depths = try items.map { item in
            let trimmed = item.trimmingCharacters(in: .whitespaces)
            guard let depth = Int(trimmed), depth > 0 else {
                throw ValidationError("--qd takes comma-separated positive integers: '\(item)' in '\(text)' is not one")
            }
            guard depth <= 65536 else {
                throw ValidationError("--qd: \(depth) is more than 65536 operations in flight")
            }
            return depth
        }
        guard !depths.isEmpty else { throw ValidationError("--qd needs at least one queue depth") }
        return depths
    }

    func run() async throws {
        let depths = try Self.parseDepths(qd)
        let progress = Progress()
        let settings = Report.Settings(
            engine: engine.rawValue, mode: mode.rawValue, file: file, sizeMiB: file == nil ? size : nil,
            compareFio: compareFio, fioFirst: fioFirst)
        let spec = Spec(
            workload: workload, blockSize: bs, direct: direct, runtime: runtime, opsLimit: ops ?? .max, batch: batch,
            submitBatch: submitBatch, repeats: rounds, sqpoll: sqpoll,
            fixedFiles: fixedFiles, fixedBuffers: fixedBuffers, readPercent: rwmixRead, threads: threads,
            asyncBatch: asyncBatch, pinnedActor: pinnedActor)

        var plan: [(EngineKind, String)] = []
        let engines: [EngineKind] =
            switch engine {
            case .io_uring: [.ioURing]
            case .libaio: [.libaio]
            case .posixAIO: [.posixAIO]
            case .all: EngineKind.allCases
            }
        if mode != .async && engines.contains(.ioURing) { plan.append((.ioURing, "raw")) }
        if mode != .raw { plan += engines.map { ($0, "async") } }

        var testFile: TestFile?
        if workload.isIO {
            progress.show("preparing \(file ?? "a \(size) MiB temporary file")")
            do {
                testFile = try TestFile(path: file, sizeMiB: size)
            } catch {
                throw ToolFailure("\(file ?? "/tmp (temporary file)"): \(error)")
            }
            // Offsets are whole blocks: a file without one would leave nothing to read.
            guard testFile!.bytes >= bs else {
                let bytes = testFile!.bytes
                testFile!.remove()
                throw ToolFailure("\(testFile!.path): \(bytes) bytes, smaller than one block (--bs \(bs))")
            }
            if !direct { testFile!.warmCache() }
        }
        defer { testFile?.remove() }
        let useFio = compareFio && workload.isIO && Fio.path != nil
        if compareFio && workload.isIO && Fio.path == nil {
            printError("ring-bench: fio is not on PATH: no fio column")
        }

        var rows: [Row] = []
        for (kind, rowMode) in plan {
            for depth in depths {
                progress.show("running \(kind) \(rowMode) qd \(depth)")
                var row = Row(engine: kind, mode: rowMode, depth: depth, spec: spec)
                let wantFio = useFio && (rowMode == "async" || kind == .ioURing)
                var ours: [Measured] = []
                var theirs: [FioResult] = []
                for round in 0..<rounds {
                    let note = rounds > 1 ? " (round \(round + 1) of \(rounds))" : ""
                    func runFio() {
                        progress.show("running fio \(Fio.engineName(kind)) qd \(depth)\(note)")
                        if let result = Fio.run(engine: kind, spec: spec, depth: depth, file: testFile!) {
                            theirs.append(result)
                        }
                    }
                    // Later rounds alternate the order, so neither side always runs on a warmer disk.
                    let fioBefore = wantFio && (fioFirst || round % 2 == 1)
                    if fioBefore { runFio() }
                    progress.show("running \(kind) \(rowMode) qd \(depth)\(note)")
                    do {
                        ours.append(
                            rowMode == "raw"
                                ? try runRaw(spec, depth: depth, file: testFile)
                                : try await runAsync(spec, engine: kind, depth: depth, file: testFile))
                    } catch {
                        row.error = "\(error)"
                        break
                    }
                    if wantFio && !fioBefore { runFio() }
                }
                if var median = ours.median(by: { Double($0.ops) / $0.seconds }) {
                    median.failures = ours.reduce(0) { $0 + $1.failures }  // a failure in any round counts
                    row.measured = median
                }
                row.fio = theirs.median(by: \.iops)
                rows.append(row)
            }
        }
        progress.show("")
        let command = "ring-bench " + CommandLine.arguments.dropFirst().joined(separator: " ")
        if json {
            print(try Report.json(rows, spec: spec, command: command, settings: settings))
        } else if markdown {
            print(Report.markdown(rows, spec: spec, command: command))
        } else {
            print(Report.table(rows, spec: spec, command: command))
        }
        if let svg {
            do {
                try Report.svg(rows, spec: spec).write(toFile: svg, atomically: true, encoding: .utf8)
            } catch {
                throw ToolFailure("\(svg): \(error.localizedDescription)")
            }
        }
        // A row that failed, or operations that came back short or with errors, fail the run.
        if rows.contains(where: { $0.error != nil || ($0.measured?.failures ?? 0) > 0 }) { throw ExitCode(1) }
    }
}

/// One line of the report.
struct Row: Sendable {
    var engine: EngineKind
    var mode: String
    var depth: Int
    var spec: Spec
    var measured: Measured?
    var fio: FioResult?
    var error: String?

    var iops: Double? { measured.map { Double($0.ops) / $0.seconds } }
    var mibPerSecond: Double? { iops.map { $0 * Double(spec.blockSize) / 1_048_576 } }
    var syscallsPerOp: Double? {
        guard let m = measured, let calls = m.systemCalls, m.ops > 0 else { return nil }
        return Double(calls) / Double(m.ops)
    }
    var fioRatio: Double? {
        guard let iops, let fio, fio.iops > 0 else { return nil }
        return iops / fio.iops
    }
    var label: String { "\(engine) \(mode)" }
}
