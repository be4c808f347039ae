import Foundation
import Glibc
import RingExec

/// fio's result for the same row.
struct FioResult: Sendable {
    var iops: Double
    var p99: Double  // completion latency, µs
    var cpuPercent: Double  // usr + sys, percent of one core
}

enum Fio {
    /// fio's path, or nil when it is not installed.
    static let path: String? = {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(directory)/fio"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }()

    static func engineName(_ engine: EngineKind) -> String {
        switch engine {
        case .ioURing: "io_uring"
        case .libaio: "libaio"
        case .posixAIO: "posixaio"
        }
    }

    /// Runs fio with the parameters of the row: same file, block size, depth, O_DIRECT, access
    /// pattern and run time; page-cache runs keep the cache (`--invalidate=0`).
    static func run(engine: EngineKind, spec: Spec, depth: Int, file: TestFile) -> FioResult? {
        guard let path, spec.workload.isIO else { return nil }
        let rw: String =
            switch spec.workload {
            case .randread: "randread"
            case .randwrite: "randwrite"
            case .read: "read"
            case .write: "write"
            case .mixed: "randrw"
            case .nop: "randread"
            }
        var arguments = [
            "--name=ring-bench", "--filename=\(file.path)", "--rw=\(rw)", "--bs=\(spec.blockSize)",
            "--direct=\(spec.direct ? 1 : 0)", "--ioengine=\(engineName(engine))", "--iodepth=\(depth)",
            "--runtime=\(spec.runtime)", "--time_based", "--size=\(file.bytes)", "--output-format=json",
            "--thread", "--norandommap", "--randrepeat=0", "--numjobs=1",
        ]
        if !spec.direct { arguments.append("--invalidate=0") }
        if spec.workload == .mixed { arguments.append("--rwmixread=\(spec.readPercent)") }
        if engine == .ioURing {
            if spec.fixedBuffers { arguments.append("--fixedbufs") }
            if spec.fixedFiles { arguments.append("--registerfiles") }
            if spec.sqpoll { arguments.append("--sqthread_poll") }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return parse(data)
    }

    static func parse(_ data: Data) -> FioResult? {
        // fio may print warnings before the JSON document.
        guard let start = data.firstIndex(of: UInt8(ascii: "{")),
            let root = try? JSONSerialization.jsonObject(with: data[start...]) as? [String: Any],
            let job = (root["jobs"] as? [[String: Any]])?.first
        else { return nil }
        var iops = 0.0
        var p99 = 0.0
        for direction in ["read", "write"] {
            guard let stats = job[direction] as? [String: Any] else { continue }
            let directionIOPS = (stats["iops"] as? Double) ?? 0
            iops += directionIOPS
            if directionIOPS > 0, let clat = stats["clat_ns"] as? [String: Any],
                let percentiles = clat["percentile"] as? [String: Any], let value = percentiles["99.000000"] as? Double
            {
                p99 = max(p99, value / 1000)
            }
        }
        let cpu = ((job["usr_cpu"] as? Double) ?? 0) + ((job["sys_cpu"] as? Double) ?? 0)
        return FioResult(iops: iops, p99: p99, cpuPercent: cpu)
    }
}
