// ring-http [--uncached] [--port PORT] DIRECTORY: a static-file HTTP/1.1 server on one io_uring.
//
// Serves the regular files under DIRECTORY on 127.0.0.1 with GET and HEAD, keep-alive and
// pipelining (every complete request in a receive is answered, the answers go out in one send).
// Cached (the default): every file is read once at start-up and its whole response kept in
// memory. Uncached: each request reads its file through `readFile(at:upTo:)` (statx, open, read and
// close as one linked chain where the kernel can). Prints "listening on 127.0.0.1:<port>" once
// ready (port 0, the default, lets the kernel choose). Stops on SIGINT or SIGTERM.
import Glibc
import RingExec
import SystemPackage

@main
struct RingHTTP {
    static let usage =
        "usage: ring-http [--uncached] [--port PORT] DIRECTORY   (ring-http --version prints the version)"

    /// The largest file served (uncached mode refuses bigger ones with 404, as a missing file).
    static let largestFile = 1 << 20

    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "--version":
            print(SwiftRing.version)
            return
        case "--help", "-h":
            print(usage)
            return
        default:
            break
        }
        // Like other Unix tools: messages on standard error, 2 for a usage error, 1 for a failure.
        var cached = true
        var port: UInt16 = 0
        while let first = arguments.first, first.hasPrefix("--") {
            arguments.removeFirst()
            switch first {
            case "--uncached":
                cached = false
            case "--port":
                guard let text = arguments.first, let number = UInt16(text) else {
                    fail("ring-http: --port needs a port (0 to 65535)\n\(usage)", status: 2)
                }
                arguments.removeFirst()
                port = number
            default:
                fail("ring-http: unknown option '\(first)'\n\(usage)", status: 2)
            }
        }
        guard arguments.count == 1 else { fail(usage, status: 2) }
        let root = arguments[0]
        let settings = (cached: cached, port: port)
        do {
            let executor = try RingExecutor(entries: 256, engine: .ioURing)
            try await executor.run {
                let site = try await Site(root: root, cached: settings.cached, on: executor)
                try await serve(site, port: settings.port, on: executor)
            }
        } catch {
            fail("ring-http: \(root) on 127.0.0.1:\(port): \(error)", status: 1)
        }
    }

    /// Prints `message` on standard error and exits with `status`.
    static func fail(_ message: String, status: Int32) -> Never {
        _ = try? FileDescriptor.standardError.writeAll((message + "\n").utf8)
        exit(status)
    }

    static func serve(_ site: Site, port: UInt16, on executor: RingExecutor) async throws {
        let listener = try await executor.socket()
        var one: Int32 = 1
        setsockopt(listener.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        try await executor.bind(listener, to: .loopback(port: port))
        try await executor.listen(listener, backlog: 1024)
        print("listening on 127.0.0.1:\(try await executor.localAddress(of: listener).port)")
        fflush(nil)  // flush every stream: the test reads this line through a pipe
        // A discarding group: an ordinary one keeps every finished connection's task until its
        // result is collected, so a long-running server would grow with each connection.
        try await withThrowingDiscardingTaskGroup { group in
            for try await connection in executor.connections(listener) {
                group.addTask {
                    let handler = Connection(fd: connection, site: site, executor: executor)
                    defer { handler.close() }
                    // A peer resetting its connection ends only that connection.
                    try? await handler.run()
                }
            }
        }
    }
}

/// The files served: whole responses kept in memory (cached), or read per request (uncached).
struct Site: Sendable {
    let root: String
    let executor: RingExecutor
    /// "/path" to its 200 response (headers and body) and the length of its headers, for HEAD.
    let responses: [String: (bytes: [UInt8], headerLength: Int)]?

    init(root: String, cached: Bool, on executor: RingExecutor) async throws {
        self.root = root
        self.executor = executor
        guard cached else {
            responses = nil
            return
        }
        var responses: [String: (bytes: [UInt8], headerLength: Int)] = [:]
        for name in Self.files(under: root, prefix: "") {
            let body = try await executor.readFile(at: FilePath(root + name), upTo: RingHTTP.largestFile)
            let header = Response.header(status: "200 OK", length: body.count)
            responses[name] = (header + body, header.count)
        }
        self.responses = responses
    }

    /// The regular files under `directory`, as "/relative/path" (plain readdir: start-up only).
    static func files(under directory: String, prefix: String) -> [String] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            switch Int32(entry.pointee.d_type) {
            case Int32(DT_DIR): names += files(under: directory + "/" + name, prefix: prefix + "/" + name)
            case Int32(DT_REG): names.append(prefix + "/" + name)
            default: break
            }
        }
        return names
    }

    /// Appends the response to `method` on `target` to `output`.
    func respond(method: Substring, target: Substring, into output: inout [UInt8]) async {
        let head = method == "HEAD"
        guard head || method == "GET" else {
            output += Response.error("405 Method Not Allowed", extra: "Allow: GET, HEAD\r\n")
            return
        }
        let path = String(target.prefix { $0 != "?" })
        if let responses {
            guard let response = responses[path] else {
                output += Response.error("404 Not Found")
                return
            }
            output += head ? response.bytes[..<response.headerLength] : response.bytes[...]
            return
        }
        // Uncached: refuse what could leave the root, then read the file through the ring.
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(".."),
            let body = try? await executor.readFile(at: FilePath(root + path), upTo: RingHTTP.largestFile)
        else {
            output += Response.error("404 Not Found")
            return
        }
        output += Response.header(status: "200 OK", length: body.count)
        if !head { output += body }
    }
}

enum Response {
    static func header(status: String, length: Int, extra: String = "") -> [UInt8] {
        Array(
            "HTTP/1.1 \(status)\r\nContent-Length: \(length)\r\nContent-Type: application/octet-stream\r\n\(extra)\r\n"
                .utf8)
    }

    static func error(_ status: String, extra: String = "") -> [UInt8] {
        let body = status + "\n"
        return Array("HTTP/1.1 \(status)\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)".utf8)
    }
}

/// One client: receives into a buffer it owns, answers every complete request in it, repeats.
final class Connection: Sendable {
    let fd: FileDescriptor
    let site: Site
    let executor: RingExecutor
    /// Owned by this connection; the executor's receive returns only when the kernel is done with it.
    nonisolated(unsafe) let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 16)

    init(fd: FileDescriptor, site: Site, executor: RingExecutor) {
        self.fd = fd
        self.site = site
        self.executor = executor
    }

    func close() {
        try? fd.close()
        buffer.deallocate()
    }

    func run() async throws {
        var pending: [UInt8] = []
        while true {
            let received = try await executor.receive(fd, into: buffer)
            if received == 0 { return }
            pending += buffer[..<received]
            var output: [UInt8] = []
            let keepOpen = await answer(&pending, into: &output)
            if !output.isEmpty { try await send(output) }
            if !keepOpen { return }
            // A request head that does not fit in 64 KiB is refused.
            if pending.count > 64 << 10 {
                try await send(Response.error("431 Request Header Fields Too Large", extra: "Connection: close\r\n"))
                return
            }
        }
    }

    private func send(_ bytes: [UInt8]) async throws {
        try await executor.send(fd, bytes: bytes)
    }

    /// Answers every complete request at the front of `pending` (removing it); false when the
    /// connection should close after `output` is sent.
    private func answer(_ pending: inout [UInt8], into output: inout [UInt8]) async -> Bool {
        var start = 0
        defer { pending.removeFirst(start) }
        while let end = Self.headEnd(pending, from: start) {
            let head = String(decoding: pending[start..<end], as: UTF8.self)
            var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
            let request = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
            guard request.count == 3, request[2] == "HTTP/1.1" || request[2] == "HTTP/1.0", !request[1].isEmpty else {
                output += Response.error("400 Bad Request", extra: "Connection: close\r\n")
                return false
            }
            var close = request[2] == "HTTP/1.0"
            var bodyLength = 0
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingSpaces.lowercased()
                if name == "connection" { close = value == "close" || (close && value != "keep-alive") }
                if name == "content-length" {
                    guard let length = Int(value), length >= 0 else {
                        output += Response.error("400 Bad Request", extra: "Connection: close\r\n")
                        return false
                    }
                    bodyLength = length
                }
            }
            // A body (unusual for GET/HEAD) is skipped once it has arrived.
            guard pending.count - (end + 4) >= bodyLength else { break }
            start = end + 4 + bodyLength
            await site.respond(method: request[0], target: request[1], into: &output)
            if close { return false }
        }
        return true
    }

    /// The index of the next "\r\n\r\n" at or after `start`.
    private static func headEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 3 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
                return index
            }
            index += 1
        }
        return nil
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
