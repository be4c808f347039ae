import Foundation
import RingExec

enum Report {
    static let headers = [
        "engine", "mode", "qd", "IOPS", "MiB/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU %", "syscalls/op", "fio IOPS", "fio p99 µs",
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
        if spec.sqpoll { text += ", SQPOLL" }
        if spec.fixedFiles { text += ", fixed files" }
        if spec.fixedBuffers { text += ", fixed buffers" }
        return text
    }

    static func failures(_ rows: [Row]) -> String {
        let failed = rows.compactMap { row in row.measured.flatMap { $0.failures > 0 ? "\(row.label) qd \(row.depth): \($0.failures)" : nil } }
        return failed.isEmpty ? "" : "\nshort or failed operations: " + failed.joined(separator: "; ")
    }

    static func table(_ rows: [Row], spec: Spec, command: String) -> String {
        let all = [headers] + rows.map(cells)
        let widths = headers.indices.map { column in all.map { $0.count > column ? $0[column].count : 0 }.max()! }
        let lines = all.map { line in
            line.enumerated().map { column, text in
                column < 3 ? text.padding(toLength: widths[column], withPad: " ", startingAt: 0)
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

    static func json(_ rows: [Row], spec: Spec, command: String) -> String {
        func number(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "null" }
        let items = rows.map { row -> String in
            var fields = [
                "\"engine\":\"\(row.engine.rawValue)\"", "\"mode\":\"\(row.mode)\"", "\"qd\":\(row.depth)",
            ]
            if let m = row.measured {
                fields += [
                    "\"ops\":\(m.ops)", "\"seconds\":\(number(m.seconds))", "\"iops\":\(number(row.iops))",
                    "\"mib_per_s\":\(number(row.mibPerSecond))", "\"p50_us\":\(number(m.latency.p50))",
                    "\"p99_us\":\(number(m.latency.p99))", "\"p999_us\":\(number(m.latency.p999))",
                    "\"cpu_percent\":\(number(m.cpuPercent))", "\"syscalls_per_op\":\(number(row.syscallsPerOp))",
                    "\"failures\":\(m.failures)",
                ]
            } else {
                fields.append("\"error\":\"\(row.error ?? "")\"")
            }
            if let fio = row.fio {
                fields += [
                    "\"fio\":{\"iops\":\(number(fio.iops)),\"p99_us\":\(number(fio.p99)),\"cpu_percent\":\(number(fio.cpuPercent))}",
                    "\"ratio_vs_fio\":\(number(row.fioRatio))",
                ]
            }
            return "{" + fields.joined(separator: ",") + "}"
        }
        return """
            {"command":"\(command)","workload":"\(spec.workload.rawValue)","block_size":\(spec.blockSize),\
            "direct":\(spec.direct),"runtime_s":\(spec.runtime),"rows":[\(items.joined(separator: ","))]}
            """
    }

    /// IOPS against queue depth, one line per engine and mode (and dashed for fio), log scale.
    static func svg(_ rows: [Row], spec: Spec) -> String {
        let width = 720.0, height = 420.0, left = 70.0, right = 190.0, top = 40.0, bottom = 50.0
        let depths = Array(Set(rows.map(\.depth))).sorted()
        var series: [(String, [(Int, Double)], Bool)] = []
        for label in rowsLabels(rows) {
            let points = rows.filter { $0.label == label }.compactMap { row in row.iops.map { (row.depth, $0) } }
            series.append((label, points, false))
            let fioPoints = rows.filter { $0.label == label && $0.mode == "async" }.compactMap { row in row.fio.map { (row.depth, $0.iops) } }
            if !fioPoints.isEmpty { series.append(("fio \(Fio.engineName(rows.first { $0.label == label }!.engine))", fioPoints, true)) }
        }
        let values = series.flatMap { $0.1.map(\.1) }.filter { $0 > 0 }
        let low = log10(max(1, (values.min() ?? 1) / 2)), high = log10((values.max() ?? 10) * 1.5)
        func x(_ depth: Int) -> Double {
            let index = Double(depths.firstIndex(of: depth) ?? 0)
            return left + (depths.count > 1 ? index / Double(depths.count - 1) : 0.5) * (width - left - right)
        }
        func y(_ value: Double) -> Double { top + (1 - (log10(max(value, 1)) - low) / (high - low)) * (height - top - bottom) }
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
                out.append("<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(value))\" y2=\"\(y(value))\" stroke=\"#ddd\"/>")
                out.append("<text x=\"\(left - 6)\" y=\"\(y(value) + 4)\" text-anchor=\"end\">\(compact(value))</text>")
            }
            exponent += 1
        }
        for depth in depths {
            out.append("<text x=\"\(x(depth))\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(depth)</text>")
        }
        out.append("<text x=\"\((left + width - right) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">queue depth</text>")
        for (index, (label, points, dashed)) in series.enumerated() {
            let color = colors[(dashed ? index - 1 : index) % colors.count]
            let path = points.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
            out.append("<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"5,4\"" : "") points=\"\(path)\"/>")
            for point in points { out.append("<circle cx=\"\(x(point.0))\" cy=\"\(y(point.1))\" r=\"3\" fill=\"\(color)\"/>") }
            let legendY = top + 18 * Double(index)
            out.append("<line x1=\"\(width - right + 15)\" x2=\"\(width - right + 40)\" y1=\"\(legendY)\" y2=\"\(legendY)\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"5,4\"" : "")/>")
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
    static func compact(_ x: Double) -> String { x >= 1e6 ? "\(fixed(x / 1e6, 0))M" : x >= 1e3 ? "\(fixed(x / 1e3, 0))k" : fixed(x, 0) }
}
