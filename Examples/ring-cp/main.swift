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
    static func main() async {
        let arguments = CommandLine.arguments
        guard arguments.count == 3 else {
            print("usage: ring-cp SRC DST")
            exit(2)
        }
        do {
            let executor = try RingExecutor(entries: 64)
            defer { executor.shutdownGracefully() }
            let copied = try await executor.run { try await copy(arguments[1], to: arguments[2], on: executor) }
            print("copied \(copied) bytes with the \(executor.engineSelection.engine) engine")
        } catch {
            print("ring-cp: \(error)")
            exit(1)
        }
    }

    static func copy(_ source: String, to target: String, on executor: RingExecutor) async throws -> Int {
        // Plain opens keep the example working on every engine (only io_uring opens files).
        let input = try FileDescriptor.open(FilePath(source), .readOnly)
        defer { try? input.close() }
        let output = try FileDescriptor.open(FilePath(target), .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        defer { try? output.close() }
        let size = Int(try input.seek(offset: 0, from: .end))
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
                        let n = try await executor.read(
                            input, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]), offset: UInt64(offset + filled))
                        guard n > 0 else { throw Errno.ioError }  // the file shrank under us
                        filled += n
                    }
                    var written = 0
                    while written < filled {
                        written += try await executor.write(
                            output, from: UnsafeRawBufferPointer(rebasing: buffer[written..<filled]), offset: UInt64(offset + written))
                    }
                }
            }
            try await group.waitForAll()
        }
        try await executor.fsync(output)
        return size
    }
}
