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
        /// The waiting task's name (absent from answers of versions before it was added).
        var task: String?

        var line: String {
            var words = ["in flight", operation]
            if let fd { words.append(fixedFile ? "fixed#\(fd)" : "fd \(fd)") }
            words.append("len \(length)")
            if entries > 1 { words.append("(chain of \(entries))") }
            if stream { words.append("stream") }
            if let task { words.append("task \"\(task)\"") }
            words.append(state)
            if let ageSeconds { words.append("for \(Render.format(ageSeconds))s") }
            return Render.printable(words.joined(separator: " "))
        }
    }

    /// The executor that drives ring `fd`, if this process serves one.
    func executor(ringFD fd: Int32) -> Executor? { executors.first { $0.ringFD == fd } }

    /// Asks process `pid`'s inspection socket; nil when it serves none, when the listener is
    /// not that process (abstract names are free for any process of the network namespace to
    /// take), when it does not accept at once (its backlog is full: stopped, or stuck) or does
    /// not finish its answer within a second, or answers something else or more than 16 MiB.
    static func query(_ pid: Int32) -> OwnExecutors? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name = Array(InspectionService.socketName(pid: pid).utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            for (index, byte) in name.enumerated() where index + 1 < path.count { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + name.count)
        // Non-blocking: a full backlog refuses with EAGAIN instead of waiting for an accept.
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0, listenerPID(fd) == pid else { return nil }
        let deadline = ContinuousClock.now + .seconds(1)
        let limit = 16 << 20
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return nil }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let polled = poll(&ready, 1, milliseconds)
            if polled < 0 && errno == EINTR { continue }
            guard polled > 0 else { return nil }
            let count = read(fd, &chunk, chunk.count)
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if count <= 0 { break }
            bytes += chunk[0..<count]
            guard bytes.count <= limit else { return nil }
        }
        guard let report = try? JSONDecoder().decode(OwnExecutors.self, from: Data(bytes)), report.pid == pid else {
            return nil
        }
        return report
    }

    /// The process that listens on the socket `fd` is connected to (`SO_PEERCRED`: recorded by
    /// the kernel when that process called `listen`).
    private static func listenerPID(_ fd: Int32) -> Int32? {
        // `struct ucred` (pid, uid, gid), which Glibc's module map leaves out (_GNU_SOURCE).
        var credentials = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0))
        var size = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0 else { return nil }
        return credentials.pid
    }
}
