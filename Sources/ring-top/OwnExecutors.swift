import FoundationEssentials
import Glibc
import RingExec

/// What a swift-ring process serves on its opt-in inspection socket (`InspectionService`): its
/// executors' counters and in-flight operations, shown under the ring each executor drives.
struct OwnExecutors: Decodable {
    var pid: Int32
    var executors: [Executor]

    /// One executor; an unresponsive one (its loop did not answer within a second) has only
    /// `id`, `engine` and `responsive`.
    struct Executor: Decodable {
        var id: UInt64
        var engine: String
        var responsive: Bool?
        var ringFD: Int32?
        var counters: [String: Int]?
        var inFlight: [Operation]?
    }

    struct Operation: Codable {
        var operation: String
        var fd: Int32?
        var fixedFile: Bool
        var length: UInt32
        var entries: Int
        var stream: Bool
        var state: String
        var ageSeconds: Double?

        var line: String {
            var words = ["in flight", operation]
            if let fd { words.append(fixedFile ? "fixed#\(fd)" : "fd \(fd)") }
            words.append("len \(length)")
            if entries > 1 { words.append("(chain of \(entries))") }
            if stream { words.append("stream") }
            words.append(state)
            if let ageSeconds { words.append("for \(Render.format(ageSeconds))s") }
            return words.joined(separator: " ")
        }
    }

    /// The executor that drives ring `fd`, if this process serves one.
    func executor(ringFD fd: Int32) -> Executor? { executors.first { $0.ringFD == fd } }

    /// Asks process `pid`'s inspection socket; nil when it serves none (or does not answer
    /// within a second, or answers something else).
    static func query(_ pid: Int32) -> OwnExecutors? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var limit = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name = Array(InspectionService.socketName(pid: pid).utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            for (index, byte) in name.enumerated() where index + 1 < path.count { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + name.count)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else { return nil }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < 16 << 20 {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        guard let report = try? JSONDecoder().decode(OwnExecutors.self, from: Data(bytes)), report.pid == pid else {
            return nil
        }
        return report
    }
}
