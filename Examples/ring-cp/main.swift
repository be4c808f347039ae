// ring-cp SRC DST: copies a file with many reads and writes in flight on one RingExecutor.
//
// Each chunk is read into its own buffer and written back at the same offset; up to `depth`
// chunks are in flight at once, so the kernel sees a deep queue even though every step is an
// ordinary `await`. The engine follows `.automatic` (or SWIFT_RING_ENGINE).
import Glibc
import RingExec
import SystemPackage

let chunk = 128 << 10
let depth = 32

@main
struct RingCopy {
    static let usage = "usage: ring-cp SRC DST   (ring-cp --version prints the version)"

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
        guard arguments.count == 2, !arguments.contains(where: { $0.hasPrefix("-") && $0 != "-" && $0.count > 1 })
        else {
            fail(usage, status: 2)
        }
        let executor: RingExecutor
        do {
            executor = try RingExecutor(entries: 64)
        } catch {
            fail("ring-cp: cannot start an executor: \(error)", status: 1)
        }
        defer { executor.shutdownGracefully() }
        do {
            let copied = try await executor.run { try await copy(arguments[0], to: arguments[1], on: executor) }
            print("copied \(copied) bytes with the \(executor.engineSelection.engine) engine")
        } catch {
            executor.shutdownGracefully()
            fail("ring-cp: \(error)", status: 1)
        }
    }

    /// Prints `message` on standard error and exits with `status`.
    static func fail(_ message: String, status: Int32) -> Never {
        _ = try? FileDescriptor.standardError.writeAll((message + "\n").utf8)
        exit(status)
    }

    /// An error and the file it happened to, printed as `path: error`.
    struct FileError: Error, CustomStringConvertible {
        var path: String
        var error: any Error
        var description: String { "\(path): \(error)" }
    }

    /// Runs `body`, naming `path` in any error it throws.
    static func on<T>(_ path: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as FileError {
            throw error
        } catch {
            throw FileError(path: path, error: error)
        }
    }

    static func copy(_ source: String, to target: String, on executor: RingExecutor) async throws -> Int {
        // Plain opens keep the example working on every engine (only io_uring opens files).
        let input = try await on(source) { try FileDescriptor.open(FilePath(source), .readOnly) }
        defer { try? input.close() }
        // A directory opens read-only, and seeking to its end gives a meaningless huge offset.
        var info = stat()
        guard fstat(input.rawValue, &info) == 0 else { throw FileError(path: source, error: Errno(rawValue: errno)) }
        guard info.st_mode & S_IFMT != S_IFDIR else { throw FileError(path: source, error: Errno.isDirectory) }
        let output = try await on(target) {
            try FileDescriptor.open(
                FilePath(target), .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        }
        defer { try? output.close() }
        let size = Int(try await on(source) { try input.seek(offset: 0, from: .end) })
        let chunks = (size + chunk - 1) / chunk
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<chunks {
                if index >= depth { try await group.next() }  // keep `depth` chunks in flight
                group.addTask {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
                    defer { buffer.deallocate() }
                    let offset = index * chunk
                    var filled = 0
                    while filled < min(chunk, size - offset) {  // short reads are legal: continue
                        let n = try await on(source) {
                            try await executor.read(
                                input, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]),
                                offset: UInt64(offset + filled))
                        }
                        // The file shrank under us.
                        guard n > 0 else { throw FileError(path: source, error: Errno.ioError) }
                        filled += n
                    }
                    var written = 0
                    while written < filled {
                        written += try await on(target) {
                            try await executor.write(
                                output, from: UnsafeRawBufferPointer(rebasing: buffer[written..<filled]),
                                offset: UInt64(offset + written))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await on(target) { try await executor.fsync(output) }
        return size
    }
}
