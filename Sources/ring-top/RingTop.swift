import ArgumentParser
import Glibc
import RingExec
import RingInspect
import RingToolSupport

/// ring-top: the io_uring rings of any process, from /proc/PID/fdinfo, refreshed like top.
@main
struct RingTop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring-top",
        abstract: "Show the io_uring rings of processes: queues, rates, backlog, what waits.",
        discussion: """
            Reads /proc/PID/fd and /proc/PID/fdinfo of every io_uring descriptor (of the PIDs \
            given, or of every process), twice, --interval seconds apart, and shows per ring the \
            SQ and CQ heads and tails, pending submissions and completions, overflowed \
            completions, requests waiting in the kernel for readiness, the SQPOLL thread and its \
            CPU, registered files and buffers, submissions and completions per second, and the \
            oldest waiting entries. On a terminal it refreshes until interrupted (or --count \
            times); otherwise it prints one table per --count. --json prints one sample as JSON. \
            Works on any program that uses io_uring (liburing, fio, swift-ring); reading another \
            user's descriptors needs the rights ptrace needs.
            """,
        version: SwiftRing.version)

    @Argument(help: "Processes to show (default: every process with an io_uring descriptor).")
    var pids: [Int32] = []

    @Option(help: "Seconds between samples.")
    var interval: Double = 1

    @Option(help: "Tables to show (default: until interrupted on a terminal, 1 otherwise).")
    var count: Int?

    @Flag(help: "Print one sample as JSON (schema in README.md, 'ring-top --json').")
    var json = false

    /// Usage errors exit 2, failures 1, messages on standard error (RingToolSupport).
    static func main() async { await runAsTool() }

    func validate() throws {
        guard interval.isFinite, interval > 0, interval <= 3600 else {
            throw ValidationError("--interval must be a positive number of seconds up to 3600, not \(interval)")
        }
        if let count, count < 1 { throw ValidationError("--count must be a positive integer, not \(count)") }
        if json, let count, count != 1 { throw ValidationError("--json prints one sample; --count must be 1") }
        if let bad = pids.first(where: { $0 <= 0 }) { throw ValidationError("'\(bad)' is not a process id") }
    }

    func run() throws {
        let selection: [Int32]? = pids.isEmpty ? nil : pids
        if let missing = pids.first(where: { !RingScanner.exists($0) }) {
            throw ToolFailure("no process \(missing)")
        }
        let terminal = isatty(1) == 1 && !json
        let tables = count ?? (terminal ? Int.max : 1)
        var previous = RingScanner.sample(selection)
        var shown = 0
        while shown < tables {
            pause(seconds: interval)
            let current = RingScanner.sample(selection)
            let rings = RingActivity.between(previous, current)
            previous = current
            // Processes of ours that opted in also tell what their executors have in flight.
            var own: [Int32: OwnExecutors] = [:]
            for pid in Set(rings.map(\.pid)) { own[pid] = OwnExecutors.query(pid) }
            shown += 1
            if json {
                print(try jsonText(TopDocument(interval: interval, rings: rings, own: own), pretty: true))
                return
            }
            let table = Render.table(rings, interval: interval, own: own)
            if terminal {
                // Home the cursor and clear the screen, as top does, then draw.
                writeOut("\u{1B}[H\u{1B}[2J" + table + "\n")
            } else {
                print(table + (shown < tables ? "\n" : ""))
                fflush(nil)
            }
        }
    }

    /// Sleeps `seconds`, resuming after signals until the whole time has passed.
    func pause(seconds: Double) {
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    func writeOut(_ text: String) {
        print(text, terminator: "")
        fflush(nil)
    }
}

/// `ring-top --json`: one sample.
struct TopDocument: Encodable {
    var version = SwiftRing.version
    var interval: Double
    var rings: [Ring]

    init(interval: Double, rings: [RingActivity], own: [Int32: OwnExecutors] = [:]) {
        self.interval = interval
        self.rings = rings.map { Ring(activity: $0, executor: own[$0.pid]?.executor(ringFD: $0.fd)) }
    }

    /// A ring; every key is present, null when the kernel did not print the value (and
    /// `counters`/`inFlight` null unless the process serves `InspectionService`).
    struct Ring: Encodable {
        var activity: RingActivity
        var executor: OwnExecutors.Executor?

        enum Key: String, CodingKey {
            case pid, command, fd, incomplete, sqEntries, cqEntries, sqHead, sqTail, cqHead, cqTail, pendingSubmissions
            case pendingCompletions, overflow, waiting, backlog, sqPollThread, sqPollCPU, registeredFiles
            case registeredBuffers, submissionsPerSecond, completionsPerSecond, oldest, counters, inFlight
        }

        func encode(to encoder: any Encoder) throws {
            let a = activity
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(a.pid, forKey: .pid)
            try c.encode(a.command, forKey: .command)
            try c.encode(a.fd, forKey: .fd)
            try c.encode(a.incomplete, forKey: .incomplete)
            try c.encode(a.sqEntries, forKey: .sqEntries)
            try c.encode(a.cqEntries, forKey: .cqEntries)
            try c.encode(a.sqHead, forKey: .sqHead)
            try c.encode(a.sqTail, forKey: .sqTail)
            try c.encode(a.cqHead, forKey: .cqHead)
            try c.encode(a.cqTail, forKey: .cqTail)
            try c.encode(a.pendingSubmissions, forKey: .pendingSubmissions)
            try c.encode(a.pendingCompletions, forKey: .pendingCompletions)
            try c.encode(a.overflow, forKey: .overflow)
            try c.encode(a.waiting, forKey: .waiting)
            try c.encode(a.backlog, forKey: .backlog)
            try c.encode(a.sqPollThread, forKey: .sqPollThread)
            try c.encode(a.sqPollCPU, forKey: .sqPollCPU)
            try c.encode(a.registeredFiles, forKey: .registeredFiles)
            try c.encode(a.registeredBuffers, forKey: .registeredBuffers)
            try c.encode(jsonNumber(a.submissionsPerSecond, decimals: 1), forKey: .submissionsPerSecond)
            try c.encode(jsonNumber(a.completionsPerSecond, decimals: 1), forKey: .completionsPerSecond)
            try c.encode(a.oldest.map(Entry.init), forKey: .oldest)
            try c.encode(executor?.counters, forKey: .counters)
            try c.encode(executor?.inFlight, forKey: .inFlight)
        }
    }

    struct Entry: Encodable {
        var entry: PendingEntry
        enum Key: String, CodingKey { case place, operation, fd, userData, result }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(entry.place.rawValue, forKey: .place)
            try c.encode(entry.operation, forKey: .operation)
            try c.encode(entry.fd, forKey: .fd)
            try c.encode(entry.userData, forKey: .userData)
            try c.encode(entry.result, forKey: .result)
        }
    }
}

enum Render {
    static let columns: [(title: String, width: Int)] = [
        ("PID", 7), ("COMMAND", 15), ("FD", 4), ("SQ HEAD/TAIL", 21), ("CQ HEAD/TAIL", 21), ("SQE", 5), ("CQE", 5),
        ("OVF", 4), ("WAIT", 5), ("SUB/s", 9), ("COMP/s", 9), ("SQPOLL@CPU", 11), ("FILES", 6), ("BUFS", 5),
    ]

    /// Waiting entries listed under each ring in the table (JSON lists `RingActivity.oldestLimit`).
    static let shownEntries = 4

    static func table(_ rings: [RingActivity], interval: Double, own: [Int32: OwnExecutors] = [:]) -> String {
        let processes = Set(rings.map(\.pid)).count
        var lines = [
            "ring-top \(SwiftRing.version): \(rings.count) ring\(rings.count == 1 ? "" : "s") in \(processes) process\(processes == 1 ? "" : "es"), rates over \(format(interval))s"
        ]
        lines.append(row(columns.map(\.title)))
        for ring in rings {
            lines.append(
                row([
                    String(ring.pid), printable(ring.command), String(ring.fd),
                    pair(ring.sqHead, ring.sqTail), pair(ring.cqHead, ring.cqTail),
                    text(ring.pendingSubmissions), text(ring.pendingCompletions), text(ring.overflow),
                    String(ring.waiting), rate(ring.submissionsPerSecond), rate(ring.completionsPerSecond),
                    ring.sqPollThread.map { "\($0)@\(text(ring.sqPollCPU))" } ?? "-",
                    text(ring.registeredFiles), text(ring.registeredBuffers),
                ]))
            if ring.incomplete {
                lines.append(
                    String(repeating: " ", count: 10) + "(the kernel printed no ring state: the ring stayed locked)")
            }
            for entry in ring.oldest.prefix(shownEntries) {
                var words = ["", "  \(entry.place.rawValue)"]
                if let operation = entry.operation { words.append(operation) }
                if let fd = entry.fd { words.append("fd \(fd)") }
                if let result = entry.result { words.append("res \(result)") }
                if let userData = entry.userData { words.append("user_data \(userData)") }
                lines.append(String(repeating: " ", count: 7) + words.joined(separator: " "))
            }
            for operation in own[ring.pid]?.executor(ringFD: ring.fd)?.inFlight?.prefix(shownEntries) ?? [] {
                lines.append(String(repeating: " ", count: 10) + operation.line)
            }
        }
        if rings.isEmpty { lines.append("(no io_uring descriptors)") }
        return lines.joined(separator: "\n")
    }

    /// `text` with its control characters (terminal escapes among them) shown as `?`: process
    /// names and inspection answers come from other processes, possibly other users'.
    static func printable(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            result.append(scalar.properties.generalCategory == .control ? "?" : scalar)
        }
        return String(result)
    }

    static func row(_ cells: [String]) -> String {
        zip(cells, columns).map { cell, column in
            let clipped = String(cell.prefix(column.width))
            return clipped + String(repeating: " ", count: column.width - clipped.count)
        }.joined(separator: " ").trimmedTrailing
    }

    static func pair(_ a: UInt32?, _ b: UInt32?) -> String { "\(text(a))/\(text(b))" }
    static func text(_ value: (some BinaryInteger)?) -> String { value.map { String($0) } ?? "-" }
    static func rate(_ value: Double?) -> String { value.map { format($0) } ?? "-" }
    static func format(_ value: Double) -> String {
        value >= 100 || value == value.rounded() ? String(Int(value.rounded())) : String(Double(Int(value * 10)) / 10)
    }
}

extension String {
    var trimmedTrailing: String { String(reversed().drop(while: { $0 == " " }).reversed()) }
}
