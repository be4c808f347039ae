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

    /// The README shows exactly the code compiled above.
    @Test func readmeShowsTheCompiledExample() throws {
        let root = String(#filePath).components(separatedBy: "/Tests/")[0]
        let readme = try String(contentsOfFile: root + "/README.md", encoding: .utf8)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let begin = source.range(of: "// README-EXEC-EXAMPLE-BEGIN\n")!.upperBound
        let end = source.range(of: "// README-EXEC-EXAMPLE-END")!.lowerBound
        #expect(readme.contains(String(source[begin..<end])), "README.md must contain the example verbatim")
    }
}
