import ArgumentParser
import Foundation
import Glibc
import RingExec

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
            awaiting RingExecutor operations (queue depth = tasks in flight).
            """)

    enum EngineOption: String, ExpressibleByArgument, CaseIterable {
        case io_uring, libaio, posix, all
    }
    enum ModeOption: String, ExpressibleByArgument, CaseIterable {
        case raw, async, both
    }

    @Option(help: "Workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload = .randread
    @Option(help: "Engine: io_uring, libaio, posix or all.")
    var engine: EngineOption = .all
    @Option(help: "raw (Ring API, io_uring only), async (RingExecutor tasks) or both.")
    var mode: ModeOption = .both
    @Option(help: "Comma-separated queue depths.")
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
    @Option(help: "Stop a row after this many operations, if that comes first.")
    var ops: Int = .max
    @Option(help: "Raw mode: completions to wait for per io_uring_enter.")
    var batch: Int = 1
    @Option(
        help: """
            Most new requests per system call: raw mode's own loop, and the executors' `submitBatch` \
            in async mode. (default: 8; raw mode on the page cache: a whole batch per call)
            """)
    var submitBatch: Int?
    @Option(help: "Async mode: executors in the group (one thread each).")
    var threads: Int = 1
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

    func run() async throws {
        let depths = qd.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        guard !depths.isEmpty else { throw ValidationError("--qd needs positive integers") }
        guard bs > 0, bs % 512 == 0 || !direct else { throw ValidationError("--bs must be a multiple of 512 with O_DIRECT") }
        guard (0...100).contains(rwmixRead) else { throw ValidationError("--rwmix-read is a percentage") }
        guard rounds >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard (submitBatch ?? 1) >= 1 else { throw ValidationError("--submit-batch must be at least 1") }
        let spec = Spec(
            workload: workload, blockSize: bs, direct: direct, runtime: runtime, opsLimit: ops, batch: batch,
            submitBatch: submitBatch, repeats: rounds, sqpoll: sqpoll,
            fixedFiles: fixedFiles, fixedBuffers: fixedBuffers, readPercent: rwmixRead, threads: max(threads, 1))

        var plan: [(EngineKind, String)] = []
        let engines: [EngineKind] =
            switch engine {
            case .io_uring: [.ioURing]
            case .libaio: [.libaio]
            case .posix: [.posixAIO]
            case .all: EngineKind.allCases
            }
        if mode != .async && engines.contains(.ioURing) { plan.append((.ioURing, "raw")) }
        if mode != .raw { plan += engines.map { ($0, "async") } }

        var testFile: TestFile?
        if workload.isIO {
            progress("preparing \(file ?? "a \(size) MiB temporary file")")
            testFile = try TestFile(path: file, sizeMiB: size)
            if !direct { testFile!.warmCache() }
        }
        defer { testFile?.remove() }
        let useFio = compareFio && workload.isIO && Fio.path != nil
        if compareFio && workload.isIO && Fio.path == nil { progress("fio is not on PATH: no fio column\n") }

        var rows: [Row] = []
        for (kind, rowMode) in plan {
            for depth in depths {
                progress("running \(kind) \(rowMode) qd \(depth)")
                var row = Row(engine: kind, mode: rowMode, depth: depth, spec: spec)
                let wantFio = useFio && (rowMode == "async" || kind == .ioURing)
                var ours: [Measured] = []
                var theirs: [FioResult] = []
                for round in 0..<rounds {
                    let note = rounds > 1 ? " (round \(round + 1) of \(rounds))" : ""
                    func runFio() {
                        progress("running fio \(Fio.engineName(kind)) qd \(depth)\(note)")
                        if let result = Fio.run(engine: kind, spec: spec, depth: depth, file: testFile!) { theirs.append(result) }
                    }
                    // Later rounds alternate the order, so neither side always runs on a warmer disk.
                    let fioBefore = wantFio && (fioFirst || round % 2 == 1)
                    if fioBefore { runFio() }
                    progress("running \(kind) \(rowMode) qd \(depth)\(note)")
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
        progress("")
        let command = "ring-bench " + CommandLine.arguments.dropFirst().joined(separator: " ")
        if json {
            print(Report.json(rows, spec: spec, command: command))
        } else if markdown {
            print(Report.markdown(rows, spec: spec, command: command))
        } else {
            print(Report.table(rows, spec: spec, command: command))
        }
        if let svg {
            try Report.svg(rows, spec: spec).write(toFile: svg, atomically: true, encoding: .utf8)
        }
        // A row that failed, or operations that came back short or with errors, fail the run.
        if rows.contains(where: { $0.error != nil || ($0.measured?.failures ?? 0) > 0 }) { throw ExitCode(1) }
    }

    /// A progress line on stderr, rewritten in place.
    func progress(_ text: String) {
        let line = Array("\r\u{1B}[K\(text)".utf8)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
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
