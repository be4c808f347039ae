// ring-echo [PORT]: a TCP echo server on 127.0.0.1, all connections on one io_uring.
//
// One multishot accept yields connections; each connection is a child task that receives with a
// multishot receive into a provided-buffer ring all connections share, and sends every message
// back. Prints "listening on 127.0.0.1:<port>" once ready (port 0, the default, lets the kernel
// choose).
import Glibc
import RingExec
import SystemPackage

@main
struct RingEcho {
    static let usage =
        "usage: ring-echo [PORT]   (PORT 0 to 65535, default 0: any; ring-echo --version prints the version)"

    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
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
        guard arguments.count <= 1 else { fail(usage, status: 2) }
        let port: UInt16
        if let text = arguments.first {
            guard let number = UInt16(text) else {
                fail("ring-echo: '\(text)' is not a port (0 to 65535)\n\(usage)", status: 2)
            }
            port = number
        } else {
            port = 0
        }
        do {
            let executor = try RingExecutor(entries: 256, engine: .ioURing)
            // With SWIFT_RING_INSPECT=1, ring-top also lists what this executor has in flight.
            let inspection = try InspectionService.startIfRequested(on: executor)
            defer { withExtendedLifetime(inspection) {} }
            try await executor.run { try await serve(port: port, on: executor) }
        } catch {
            fail("ring-echo: 127.0.0.1:\(port): \(error)", status: 1)
        }
    }

    /// Prints `message` on standard error and exits with `status`.
    static func fail(_ message: String, status: Int32) -> Never {
        _ = try? FileDescriptor.standardError.writeAll((message + "\n").utf8)
        exit(status)
    }

    static func serve(port: UInt16, on executor: RingExecutor) async throws {
        let listener = try await executor.socket()
        try await executor.setOption(.reuseAddress, to: true, on: listener)
        try await executor.bind(listener, to: .loopback(port: port))
        try await executor.listen(listener, backlog: 1024)
        print("listening on 127.0.0.1:\(try await executor.localAddress(of: listener).port)")
        fflush(nil)  // flush every stream: the test reads this line through a pipe
        // Every connection receives into one shared pool of buffers: receive memory is 1 MiB
        // however many connections there are.
        let pool = try await executor.makeReceiveBufferPool(bufferSize: 4096, bufferCount: 256)
        // A discarding group: a long-running server must not keep each finished connection's
        // result.
        try await withThrowingDiscardingTaskGroup { group in
            for try await connection in executor.connections(listener) {
                // Named, so that inFlightOperations() and ring-top say whose receive waits.
                group.addTask(name: "connection \(connection.rawValue)") {
                    do {
                        for try await message in try await executor.messages(connection, pool: pool) {
                            try await executor.send(connection, bytes: message)
                        }
                    } catch {
                        // A peer resetting its connection ends only that connection.
                    }
                    try? await executor.close(connection)
                }
            }
        }
    }
}
