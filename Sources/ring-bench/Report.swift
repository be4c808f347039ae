import Foundation
import RingExec
import RingToolSupport

enum Report {
    static let headers = [
        "engine", "mode", "qd", "IOPS", "MiB/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU %", "syscalls/op", "fio IOPS",
        "fio p99 µs",
        "fio CPU %", "vs fio",
    ]

    static func cells(_ row: Row) -> [String] {
        guard let m = row.measured else {
            return [row.engine.rawValue, row.mode, String(row.depth), "error: \(row.error ?? "?")"]
                + Array(repeating: "", count: headers.count - 4)
        }
        return [
            row.engine.rawValue, row.mode, String(row.depth), integer(row.iops!), fixed(row.mibPerSecond!, 1),
            fixed(m.latency.p50, 1), fixed(m.latency.p99, 1), fixed(m.latency.p999, 1), fixed(m.cpuPercent, 0),
            row.syscallsPerOp.map { fixed($0, 3) } ?? "-", row.fio.map { integer($0.iops) } ?? "-",
            row.fio.map { fixed($0.p99, 1) } ?? "-", row.fio.map { fixed($0.cpuPercent, 0) } ?? "-",
            row.fioRatio.map { fixed($0, 2) + "×" } ?? "-",
        ]
    }

    static func describe(_ spec: Spec) -> String {
        var text = "\(spec.workload.rawValue), \(spec.blockSize) B, \(spec.direct ? "O_DIRECT" : "page cache"), "
        text += "\(spec.runtime) s per row"
        if spec.workload == .mixed { text += ", \(spec.readPercent)% reads" }
        if spec.threads > 1 { text += ", \(spec.threads) executor threads" }
        if spec.repeats > 1 { text += ", median of \(spec.repeats) rounds" }
        if let batch = spec.submitBatch { text += ", at most \(batch) per submit" }
        if spec.asyncBatch > 1 { text += ", async: \(spec.asyncBatch) requests per await" }
        if spec.pinnedActor { text += ", async: isolated to a pinned actor" }
        if spec.sqpoll { text += ", SQPOLL" }
        if spec.fixedFiles { text += ", fixed files" }
        if spec.fixedBuffers { text += ", fixed buffers" }
        return text
    }

    static func failures(_ rows: [Row]) -> String {
        let failed = rows.compactMap { row in
            row.measured.flatMap { $0.failures > 0 ? "\(row.label) qd \(row.depth): \($0.failures)" : nil }
        }
        return failed.isEmpty ? "" : "\nshort or failed operations: " + failed.joined(separator: "; ")
    }

    static func table(_ rows: [Row], spec: Spec, command: String) -> String {
        let all = [headers] + rows.map(cells)
        let widths = headers.indices.map { column in all.map { $0.count > column ? $0[column].count : 0 }.max()! }
        let lines = all.map { line in
            line.enumerated().map { column, text in
                column < 3
                    ? text.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - text.count) + text
            }.joined(separator: "  ")
        }
        return "\(command): \(describe(spec))\n" + lines.joined(separator: "\n") + failures(rows)
    }

    static func markdown(_ rows: [Row], spec: Spec, command: String) -> String {
        var out = ["`\(command)` — \(describe(spec))", ""]
        out.append("| " + headers.joined(separator: " | ") + " |")
        out.append("|" + headers.indices.map { $0 < 2 ? "---" : "---:" }.joined(separator: "|") + "|")
        for row in rows { out.append("| " + cells(row).joined(separator: " | ") + " |") }
        return out.joined(separator: "\n") + failures(rows)
    }

    /// Command-line settings a row's `Spec` does not carry.
    struct Settings {
        var engine: String
        var mode: String
        var file: String?
        var sizeMiB: Int?
        var compareFio: Bool
        var fioFirst: Bool
    }

    /// The `--json` document (schema 1; README.md, "ring-bench"): JSONEncoder, so paths and
    /// messages with quotes, tabs or any Unicode stay valid JSON, and numbers that are not finite
    /// are null. It records every setting that shaped the numbers.
    struct Document: Encodable {
        var schema = 1
        var toolVersion = SwiftRing.version
        var command: String
        var workload: String
        var blockSize: Int
        var direct: Bool
        var runtimeSeconds: Double
        var engine: String
        var mode: String
        var file: String?
        var sizeMiB: Int?
        var threads: Int
        /// `--submit-batch` as given; null for the defaults (`raw_submit_batch`, `async_submit_batch`).
        var submitBatch: Int?
        var rawSubmitBatch: Int?
        var asyncSubmitBatch: Int
        var asyncBatch: Int
        var pinnedActor: Bool
        var batch: Int
        var sqpoll: Bool
        var fixedFiles: Bool
        var fixedBuffers: Bool
        var repeatCount: Int
        var opsLimit: Int?
        var rwmixRead: Int
        var compareFio: Bool
        var fioFirst: Bool
        var rows: [JSONRow]

        enum CodingKeys: String, CodingKey {
            case schema, toolVersion = "tool_version", command, workload, blockSize = "block_size", direct
            case runtimeSeconds = "runtime_s", engine, mode, file, sizeMiB = "size_mib", threads
            case submitBatch = "submit_batch", rawSubmitBatch = "raw_submit_batch", asyncSubmitBatch =
                "async_submit_batch"
            case asyncBatch = "async_batch", pinnedActor = "pinned_actor"
            case batch, sqpoll, fixedFiles = "fixed_files", fixedBuffers = "fixed_buffers", repeatCount = "repeat"
            case opsLimit = "ops_limit", rwmixRead = "rwmix_read", compareFio = "compare_fio", fioFirst = "fio_first",
                rows
        }

        // Every key present; absent values are null (synthesized Encodable would drop them).
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(schema, forKey: .schema)
            try c.encode(toolVersion, forKey: .toolVersion)
            try c.encode(command, forKey: .command)
            try c.encode(workload, forKey: .workload)
            try c.encode(blockSize, forKey: .blockSize)
            try c.encode(direct, forKey: .direct)
            try c.encode(runtimeSeconds, forKey: .runtimeSeconds)
            try c.encode(engine, forKey: .engine)
            try c.encode(mode, forKey: .mode)
            try c.encode(file, forKey: .file)
            try c.encode(sizeMiB, forKey: .sizeMiB)
            try c.encode(threads, forKey: .threads)
            try c.encode(submitBatch, forKey: .submitBatch)
            try c.encode(rawSubmitBatch, forKey: .rawSubmitBatch)
            try c.encode(asyncSubmitBatch, forKey: .asyncSubmitBatch)
            try c.encode(asyncBatch, forKey: .asyncBatch)
            try c.encode(pinnedActor, forKey: .pinnedActor)
            try c.encode(batch, forKey: .batch)
            try c.encode(sqpoll, forKey: .sqpoll)
            try c.encode(fixedFiles, forKey: .fixedFiles)
            try c.encode(fixedBuffers, forKey: .fixedBuffers)
            try c.encode(repeatCount, forKey: .repeatCount)
            try c.encode(opsLimit, forKey: .opsLimit)
            try c.encode(rwmixRead, forKey: .rwmixRead)
            try c.encode(compareFio, forKey: .compareFio)
            try c.encode(fioFirst, forKey: .fioFirst)
            try c.encode(rows, forKey: .rows)
        }
    }

    /// One row: `engine`, `mode`, `qd`, then either the measurements or `error`, and `fio` with
    /// `ratio_vs_fio` when fio ran.
    struct JSONRow: Encodable {
        var engine: String
        var mode: String
        var qd: Int
        var measured: Measured?
        var iops: Double?
        var mibPerSecond: Double?
        var syscallsPerOp: Double?
        var error: String?
        var fio: FioResult?
        var ratioVsFio: Double?

        enum CodingKeys: String, CodingKey {
            case engine, mode, qd, ops, seconds, iops, mibPerSecond = "mib_per_s", p50 = "p50_us", p99 = "p99_us"
            case p999 = "p999_us", cpuPercent = "cpu_percent", syscallsPerOp = "syscalls_per_op", failures, error, fio
            case ratioVsFio = "ratio_vs_fio"
        }
        enum FioKeys: String, CodingKey { case iops, p99 = "p99_us", cpuPercent = "cpu_percent" }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(engine, forKey: .engine)
            try c.encode(mode, forKey: .mode)
            try c.encode(qd, forKey: .qd)
            if let m = measured {
                try c.encode(m.ops, forKey: .ops)
                try c.encode(jsonNumber(m.seconds), forKey: .seconds)
                try c.encode(jsonNumber(iops), forKey: .iops)
                try c.encode(jsonNumber(mibPerSecond), forKey: .mibPerSecond)
                try c.encode(jsonNumber(m.latency.p50), forKey: .p50)
                try c.encode(jsonNumber(m.latency.p99), forKey: .p99)
                try c.encode(jsonNumber(m.latency.p999), forKey: .p999)
                try c.encode(jsonNumber(m.cpuPercent), forKey: .cpuPercent)
                try c.encode(jsonNumber(syscallsPerOp), forKey: .syscallsPerOp)
                try c.encode(m.failures, forKey: .failures)
            } else {
                try c.encode(error ?? "", forKey: .error)
            }
            if let fio {
                var f = c.nestedContainer(keyedBy: FioKeys.self, forKey: .fio)
                try f.encode(jsonNumber(fio.iops), forKey: .iops)
                try f.encode(jsonNumber(fio.p99), forKey: .p99)
                try f.encode(jsonNumber(fio.cpuPercent), forKey: .cpuPercent)
                try c.encode(jsonNumber(ratioVsFio), forKey: .ratioVsFio)
            }
        }
    }

    static func document(_ rows: [Row], spec: Spec, command: String, settings: Settings) -> Document {
        Document(
            command: command, workload: spec.workload.rawValue, blockSize: spec.blockSize, direct: spec.direct,
            runtimeSeconds: spec.runtime, engine: settings.engine, mode: settings.mode, file: settings.file,
            sizeMiB: settings.sizeMiB, threads: spec.threads, submitBatch: spec.submitBatch,
            rawSubmitBatch: spec.rawSubmitBatch == .max ? nil : spec.rawSubmitBatch,
            asyncSubmitBatch: spec.asyncSubmitBatch, asyncBatch: spec.asyncBatch, pinnedActor: spec.pinnedActor,
            batch: spec.batch,
            sqpoll: spec.sqpoll,
            fixedFiles: spec.fixedFiles, fixedBuffers: spec.fixedBuffers, repeatCount: spec.repeats,
            opsLimit: spec.opsLimit == .max ? nil : spec.opsLimit, rwmixRead: spec.readPercent,
            compareFio: settings.compareFio, fioFirst: settings.fioFirst,
            rows: rows.map { row in
                JSONRow(
                    engine: row.engine.rawValue, mode: row.mode, qd: row.depth, measured: row.measured, iops: row.iops,
                    mibPerSecond: row.mibPerSecond, syscallsPerOp: row.syscallsPerOp, error: row.error, fio: row.fio,
                    ratioVsFio: row.fioRatio)
            })
    }

    static func json(_ rows: [Row], spec: Spec, command: String, settings: Settings) throws -> String {
        try jsonText(document(rows, spec: spec, command: command, settings: settings), pretty: false)
    }

    /// IOPS against queue depth, one line per engine and mode (and dashed for fio), log scale.
    static func svg(_ rows: [Row], spec: Spec) -> String {
        let width = 720.0, height = 420.0, left = 70.0, right = 190.0, top = 40.0, bottom = 50.0
        let depths = Array(Set(rows.map(\.depth))).sorted()
        var series: [(String, [(Int, Double)], Bool)] = []
        for label in rowsLabels(rows) {
            let points = rows.filter { $0.label == label }.compactMap { row in row.iops.map { (row.depth, $0) } }
            series.append((label, points, false))
            let fioPoints = rows.filter { $0.label == label && $0.mode == "async" }.compactMap { row in
                row.fio.map { (row.depth, $0.iops) }
            }
            if !fioPoints.isEmpty {
                series.append(("fio \(Fio.engineName(rows.first { $0.label == label }!.engine))", fioPoints, true))
            }
        }
        let values = series.flatMap { $0.1.map(\.1) }.filter { $0 > 0 }
        let low = log10(max(1, (values.min() ?? 1) / 2)), high = log10((values.max() ?? 10) * 1.5)
        func x(_ depth: Int) -> Double {
            let index = Double(depths.firstIndex(of: depth) ?? 0)
            return left + (depths.count > 1 ? index / Double(depths.count - 1) : 0.5) * (width - left - right)
        }
        func y(_ value: Double) -> Double {
            top + (1 - (log10(max(value, 1)) - low) / (high - low)) * (height - top - bottom)
        }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
        var out = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"\(left)\" y=\"22\" font-size=\"14\">IOPS by queue depth — \(describe(spec))</text>",
        ]
        var exponent = floor(low)
        while exponent <= ceil(high) {
            for mantissa in [1.0, 2.0, 5.0] {
                let value = mantissa * pow(10, exponent)
                guard log10(value) >= low && log10(value) <= high else { continue }
                out.append(
                    "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(value))\" y2=\"\(y(value))\" stroke=\"#ddd\"/>"
                )
                out.append("<text x=\"\(left - 6)\" y=\"\(y(value) + 4)\" text-anchor=\"end\">\(compact(value))</text>")
            }
            exponent += 1
        }
        for depth in depths {
            out.append("<text x=\"\(x(depth))\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(depth)</text>")
        }
        out.append(
            "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">queue depth</text>")
        for (index, (label, points, dashed)) in series.enumerated() {
            let color = colors[(dashed ? index - 1 : index) % colors.count]
            let path = points.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
            out.append(
                "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"5,4\"" : "") points=\"\(path)\"/>"
            )
            for point in points {
                out.append("<circle cx=\"\(x(point.0))\" cy=\"\(y(point.1))\" r=\"3\" fill=\"\(color)\"/>")
            }
            let legendY = top + 18 * Double(index)
            out.append(
                "<line x1=\"\(width - right + 15)\" x2=\"\(width - right + 40)\" y1=\"\(legendY)\" y2=\"\(legendY)\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"5,4\"" : "")/>"
            )
            out.append("<text x=\"\(width - right + 46)\" y=\"\(legendY + 4)\">\(label)</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    static func rowsLabels(_ rows: [Row]) -> [String] {
        var seen: [String] = []
        for row in rows where !seen.contains(row.label) { seen.append(row.label) }
        return seen
    }

    static func integer(_ x: Double) -> String { String(Int(x.rounded())) }
    static func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
    static func compact(_ x: Double) -> String {
        x >= 1e6 ? "\(fixed(x / 1e6, 0))M" : x >= 1e3 ? "\(fixed(x / 1e3, 0))k" : fixed(x, 0)
    }
}
