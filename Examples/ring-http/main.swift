// ring-http [--uncached] [--port PORT] DIRECTORY: a static-file HTTP/1.1 server on one io_uring.
//
// Serves the regular files under DIRECTORY on 127.0.0.1 with GET and HEAD, keep-alive and
// pipelining (every complete request in a receive is answered, the answers go out in one send).
// Cached (the default): every file is read once at start-up and its whole response kept in
// memory. Uncached: each request reads its file through `readFile(at:into:)` (statx, open, read
// and close as one linked chain where the kernel can) into memory the connection keeps. Requests
// are parsed from their bytes; responses are gathered in memory the connection owns and sent from
// there. Prints "listening on 127.0.0.1:<port>" once ready (port 0, the default, lets the kernel
// choose). Stops on SIGINT or SIGTERM.
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
    func respond(method: ArraySlice<UInt8>, target: ArraySlice<UInt8>, into output: inout Output) async {
        let head = method.elementsEqual("HEAD".utf8)
        guard head || method.elementsEqual("GET".utf8) else {
            output.append(Response.error("405 Method Not Allowed", extra: "Allow: GET, HEAD\r\n"))
            return
        }
        let path = String(decoding: target.prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self)
        if let responses {
            guard let response = responses[path] else {
                output.append(Response.error("404 Not Found"))
                return
            }
            output.append(head ? response.bytes[..<response.headerLength] : response.bytes[...])
            return
        }
        // Uncached: refuse what could leave the root, then read the file through the ring, into
        // memory the connection keeps for that.
        let file = output.fileBuffer()
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(".."),
            let size = try? await executor.readFile(at: FilePath(root + path), into: file)
        else {
            output.append(Response.error("404 Not Found"))
            return
        }
        output.append(Response.header(status: "200 OK", length: size))
        if !head { output.append(UnsafeRawBufferPointer(rebasing: file[..<size])) }
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

/// Responses on their way out, in memory the connection owns: the executor's `send` returns
/// only when the kernel is done with it, so it is reused for the next batch. Also the memory
/// the uncached server reads files into.
struct Output: ~Copyable {
    private var memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    private(set) var count = 0
    private var file: UnsafeMutableRawBufferPointer?

    /// Memory for one file of up to `RingHTTP.largestFile` bytes (allocated on first use).
    mutating func fileBuffer() -> UnsafeMutableRawBufferPointer {
        if let file { return file }
        let new = UnsafeMutableRawBufferPointer.allocate(byteCount: RingHTTP.largestFile, alignment: 16)
        file = new
        return new
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: memory[..<count]) }

    mutating func append(_ bytes: some Collection<UInt8>) {
        let needed = count + bytes.count
        if needed > memory.count {
            let larger = UnsafeMutableRawBufferPointer.allocate(
                byteCount: max(needed, 2 * memory.count), alignment: 16)
            larger.copyMemory(from: UnsafeRawBufferPointer(rebasing: memory[..<count]))
            memory.deallocate()
            memory = larger
        }
        UnsafeMutableRawBufferPointer(rebasing: memory[count...]).copyBytes(from: bytes)
        count = needed
    }

    mutating func removeAll() { count = 0 }

    deinit {
        memory.deallocate()
        file?.deallocate()
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
        var output = Output()
        while true {
            let received = try await executor.receive(fd, into: buffer)
            if received == 0 { return }
            pending += buffer[..<received]
            output.removeAll()
            let keepOpen = await answer(&pending, into: &output)
            try await send(output.bytes)
            if !keepOpen { return }
            // A request head that does not fit in 64 KiB is refused.
            if pending.count > 64 << 10 {
                output.removeAll()
                output.append(Response.error("431 Request Header Fields Too Large", extra: "Connection: close\r\n"))
                try await send(output.bytes)
                return
            }
        }
    }

    /// Sends all of `bytes` (a stream socket may take less than everything at once).
    private func send(_ bytes: UnsafeRawBufferPointer) async throws {
        var sent = 0
        while sent < bytes.count {
            sent += try await executor.send(fd, from: UnsafeRawBufferPointer(rebasing: bytes[sent...]))
        }
    }

    /// Answers every complete request at the front of `pending` (removing it); false when the
    /// connection should close after `output` is sent.
    private func answer(_ pending: inout [UInt8], into output: inout Output) async -> Bool {
        var start = 0
        defer { pending.removeFirst(start) }
        while let end = Self.headEnd(pending, from: start) {
            guard let request = RequestHead(pending[start..<end]) else {
                output.append(Response.error("400 Bad Request", extra: "Connection: close\r\n"))
                return false
            }
            // A body (unusual for GET/HEAD) is skipped once it has arrived.
            guard pending.count - (end + 4) >= request.bodyLength else { break }
            start = end + 4 + request.bodyLength
            await site.respond(method: request.method, target: request.target, into: &output)
            if request.closes { return false }
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

/// A request's head, read from its bytes where they lie (no strings on the way: building and
/// comparing `String`s was a fifth of the server's time under load): the request line, then the
/// two headers that matter here, `Connection` and `Content-Length`, in any letter case.
struct RequestHead {
    var method: ArraySlice<UInt8>
    var target: ArraySlice<UInt8>
    /// HTTP/1.0 without `Connection: keep-alive`, or `Connection: close`.
    var closes: Bool
    var bodyLength = 0

    /// Nil for a malformed head: a request line that is not "METHOD TARGET HTTP/1.x", or a
    /// `Content-Length` that is not a number.
    init?(_ head: ArraySlice<UInt8>) {
        var lines = Self.lines(of: head)
        let requestLine = lines.removeFirst().split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard requestLine.count == 3, !requestLine[1].isEmpty else { return nil }
        let oldVersion = requestLine[2].elementsEqual("HTTP/1.0".utf8)
        guard oldVersion || requestLine[2].elementsEqual("HTTP/1.1".utf8) else { return nil }
        (method, target, closes) = (requestLine[0], requestLine[1], oldVersion)
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = line[..<colon]
            let value = Self.trimmed(line[(colon + 1)...])
            if Self.equalIgnoringCase(name, "connection") {
                if Self.equalIgnoringCase(value, "close") {
                    closes = true
                } else if Self.equalIgnoringCase(value, "keep-alive") {
                    closes = false
                }
            } else if Self.equalIgnoringCase(name, "content-length") {
                guard let length = Self.decimal(value) else { return nil }
                bodyLength = length
            }
        }
    }

    /// The lines of `head`, split at CR LF.
    private static func lines(of head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = head.startIndex
        var index = head.startIndex
        while index + 1 < head.endIndex {
            if head[index] == 13 && head[index + 1] == 10 {
                lines.append(head[lineStart..<index])
                index += 2
                lineStart = index
            } else {
                index += 1
            }
        }
        lines.append(head[lineStart...])
        return lines
    }

    /// `bytes` without spaces and tabs at either end.
    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = bytes.firstIndex(where: { !isBlank($0) }), let last = bytes.lastIndex(where: { !isBlank($0) })
        else { return bytes[bytes.endIndex...] }
        return bytes[first...last]
    }

    /// Whether `bytes` spell `lowercase` in any letter case (ASCII).
    private static func equalIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        return zip(bytes, expected).allSatisfy { byte, letter in
            byte == letter || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte + 32 == letter)
        }
    }

    /// A non-negative decimal number of at most 18 digits (no sign, nothing else).
    private static func decimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
