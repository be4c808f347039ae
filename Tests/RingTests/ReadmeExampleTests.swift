import Foundation
import Glibc
import Ring
import SystemPackage
import Testing

// README-EXAMPLE-BEGIN
/// Reads the first 4 KiB of a file through a raw ring.
func readFirstBlock(of path: FilePath) throws -> [UInt8] {
    let fd = try FileDescriptor.open(path, .readOnly)
    defer { try? fd.close() }
    // The kernel writes into this buffer until the completion arrives: keep it alive until then.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { buffer.deallocate() }

    var ring = try Ring(entries: 8)
    guard ring.push(.read(fd, into: buffer, offset: 0).userData(1)) else {
        throw Errno.resourceTemporarilyUnavailable  // SQ full (cannot happen on a new ring)
    }
    try ring.submitAndWait(1)  // one io_uring_enter: submit the read, wait for its completion
    var result: Int32 = 0
    ring.forEachCompletion { result = $0.result }
    if result < 0 { throw Errno(rawValue: -result) }
    return Array(buffer.prefix(Int(result)))
}
// README-EXAMPLE-END

@Suite(.timeLimit(.minutes(1))) struct ReadmeExampleTests {
    @Test func exampleReadsAFile() throws {
        let file = try TemporaryFile()
        let data = pattern(count: 5000, seed: 3)
        _ = try data.withUnsafeBytes { try file.fd.writeAll($0) }
        let block = try readFirstBlock(of: FilePath(file.path))
        #expect(block == Array(data.prefix(4096)))
        #expect(throws: Errno.noSuchFileOrDirectory) { try readFirstBlock(of: "/nonexistent/swift-ring") }
    }

    /// The README shows exactly the code compiled above.
    @Test func readmeShowsTheCompiledExample() throws {
        let root = String(#filePath).components(separatedBy: "/Tests/")[0]
        let readme = try String(contentsOfFile: root + "/README.md", encoding: .utf8)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let begin = source.range(of: "// README-EXAMPLE-BEGIN\n")!.upperBound
        let end = source.range(of: "// README-EXAMPLE-END")!.lowerBound
        let example = String(source[begin..<end])
        #expect(readme.contains(example), "README.md must contain the example from ReadmeExampleTests.swift verbatim")
    }
}
