// ring-echo [PORT]: a TCP echo server on 127.0.0.1, all connections on one io_uring.
//
// One multishot accept yields connections; each connection is a child task that receives with a
// multishot receive into a provided-buffer ring and sends every message back. Prints
// "listening on 127.0.0.1:<port>" once ready (port 0, the default, lets the kernel choose).
import Glibc
import RingExec
import SystemPackage

@main
struct RingEcho {
    static func main() async {
        let port = CommandLine.arguments.count > 1 ? UInt16(CommandLine.arguments[1]) ?? 0 : 0
        do {
            let executor = try RingExecutor(entries: 256, engine: .ioURing)
            try await executor.run { try await serve(port: port, on: executor) }
        } catch {
            print("ring-echo: \(error)")
            exit(1)
        }
    }

    static func serve(port: UInt16, on executor: RingExecutor) async throws {
        let listener = try await executor.socket()
        var one: Int32 = 1
        setsockopt(listener.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        try await executor.bind(listener, to: .loopback(port: port))
        try await executor.listen(listener, backlog: 1024)
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener.rawValue, $0, &length) }
        }
        print("listening on 127.0.0.1:\(UInt16(bigEndian: address.sin_port))")
        fflush(nil)  // flush every stream: the test reads this line through a pipe
        try await withThrowingTaskGroup(of: Void.self) { group in
            for try await connection in executor.connections(listener) {
                group.addTask {
                    defer { try? connection.close() }
                    do {
                        for try await message in try await executor.messages(connection, bufferSize: 4096, bufferCount: 16) {
                            try await executor.send(connection, bytes: message)
                        }
                    } catch {
                        // A peer resetting its connection ends only that connection.
                    }
                }
            }
        }
    }
}
