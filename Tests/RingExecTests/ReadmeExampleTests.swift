import Foundation
import Glibc
import RingExec
import SystemPackage
import Testing

// README-EXEC-EXAMPLE-BEGIN
/// Reads a whole file with one task per 64 KiB block, all in flight at once on the ring's
/// thread, and returns how many bytes it read.
func countBytes(of path: FilePath, on executor: RingExecutor) async throws -> Int {
    try await executor.run {
        let fd = try await executor.open(path, .readOnly)
        let size = Int(try await executor.status(of: fd).size)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for offset in stride(from: 0, to: size, by: 65536) {
                // Each child task inherits the executor preference: it runs on the ring too.
                group.addTask { try await executor.read(fd, upTo: 65536, offset: UInt64(offset)).count }
            }
            return try await group.reduce(0, +)
        }
        try await executor.close(fd)
        return total
    }
}

// let executor = try RingExecutor()           // io_uring, else libaio, else POSIX aio
// defer { executor.shutdownGracefully() }
// print(try await countBytes(of: "/etc/services", on: executor))
// README-EXEC-EXAMPLE-END

// README-SERVER-EXAMPLE-BEGIN
/// Accepts connections until shutdown begins and serves each in a child task on the ring.
func runServer(_ listener: FileDescriptor, on executor: RingExecutor) async throws {
    try await executor.run {
        try await withThrowingDiscardingTaskGroup { group in
            // The stream ends when shutdown begins; the group then waits for its connections.
            for try await connection in executor.connections(listener) {
                group.addTask { await serve(connection, on: executor) }
            }
        }
    }
}

/// Answers each request with "ok\n" until the peer closes, stays idle for `idle`, or the
/// executor starts shutting down; then closes the connection.
func serve(_ connection: FileDescriptor, on executor: RingExecutor, idle: Duration = .seconds(30)) async {
    do {
        while true {
            // Waiting for the next request: bounded by the idle timeout, cancelled by shutdown.
            let request = try await executor.withShutdownCancellation {
                try await executor.withTimeout(idle) { try await executor.receive(connection, upTo: 4096) }
            }
            if request.isEmpty { break }  // the peer closed its end
            try await executor.send(connection, bytes: Array("ok\n".utf8))
        }
    } catch {
        // Errno.timedOut (idle), CancellationError (shutdown began), or the connection's Errno.
    }
    try? await executor.close(connection)  // cancels what is still pending on it, then closes
}
// README-SERVER-EXAMPLE-END

@Suite(.timeLimit(.minutes(3))) struct ExecutorReadmeExampleTests {
    @Test func exampleCountsTheBytesOfAFile() async throws {
        let executor = try RingExecutor()
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 300_000))
        defer { file.remove() }
        #expect(try await countBytes(of: FilePath(file.path), on: executor) == 300_000)
        await #expect(throws: Errno.noSuchFileOrDirectory) {
            _ = try await countBytes(of: "/nonexistent/ring", on: executor)
        }
    }

    /// The server of the README: answers a request, and when shutdown begins with a 60 s
    /// deadline the idle keep-alive connection is closed at once and shutdown ends (this
    /// suite's time limit is far shorter than the deadline would be with the connection open).
    @Test func serverExampleAnswersAndDrainsAtShutdown() async throws {
        let executor = try RingExecutor(entries: 32)
        let listener = try await executor.socket()
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let server = Task { try await runServer(listener, on: executor) }
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: .loopback(port: boundPort(listener)))
        try await executor.send(client, bytes: Array("GET /\n".utf8))
        #expect(try await executor.receive(client, upTo: 16) == Array("ok\n".utf8))
        await executor.shutdown(deadline: .seconds(60))
        await #expect(throws: Never.self) { try await server.value }
        #expect(peerReadsEndOfFile(client), "the server closed the idle connection")
        try listener.close()
    }

    /// The README shows exactly the code compiled above.
    @Test func readmeShowsTheCompiledExample() throws {
        let root = String(#filePath).components(separatedBy: "/Tests/")[0]
        let readme = try String(contentsOfFile: root + "/README.md", encoding: .utf8)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let begin = source.range(of: "// README-EXEC-EXAMPLE-BEGIN\n")!.upperBound
        let end = source.range(of: "// README-EXEC-EXAMPLE-END")!.lowerBound
        #expect(readme.contains(String(source[begin..<end])), "README.md must contain the example verbatim")
        let serverBegin = source.range(of: "// README-SERVER-EXAMPLE-BEGIN\n")!.upperBound
        let serverEnd = source.range(of: "// README-SERVER-EXAMPLE-END")!.lowerBound
        #expect(
            readme.contains(String(source[serverBegin..<serverEnd])),
            "README.md must contain the server example verbatim")
    }
}
