import Foundation
import Glibc
import RingExec
import SystemPackage
import Testing

/// Drives the programs in Examples/ as a user would.
@Suite(.timeLimit(.minutes(3))) struct ExampleTests {
    /// A sibling executable of the test bundle in the build folder.
    static func binary(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        var directory = (CommandLine.arguments[0] as NSString).deletingLastPathComponent
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directory = (exe as NSString).deletingLastPathComponent
        }
        for _ in 0..<3 {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = (directory as NSString).deletingLastPathComponent
        }
        skip(
            .helpers, "\(name) is not built next to the tests (run `swift build` first)", sourceLocation: sourceLocation
        )
        return nil
    }

    @Test(arguments: [EngineKind.ioURing, .libaio, .posixAIO], [0, 1, 5 << 20 + 12345])
    func ringCopyCopiesByteForByte(engine: EngineKind, size: Int) async throws {
        guard let tool = Self.binary("ring-cp"), !skippedUnderSanitizer(engine) else { return }
        let source = try TemporaryFile(contents: pattern(count: size))
        defer { source.remove() }
        let target = source.path + ".copy"
        defer { unlink(target) }
        // Standard error too: ring-cp reports an unavailable engine there.
        let (status, text) = try await runProcess(
            tool, [source.path, target], environment: ["SWIFT_RING_ENGINE": engine.rawValue], standardError: true)
        if text.contains("engine is unavailable") {
            skip(engine.need, "ring-cp on \(engine): \(text)")
            return
        }
        #expect(status == 0, "\(text)")
        #expect(text.contains("copied \(size) bytes with the \(engine) engine"), "\(text)")
        let copied = try FileDescriptor.open(FilePath(target), .readOnly)
        defer { try? copied.close() }
        var copy = [UInt8](repeating: 0, count: size + 1)
        let read = try copy.withUnsafeMutableBytes { try copied.read(fromAbsoluteOffset: 0, into: $0) }
        #expect(read == size)
        #expect(Array(copy.prefix(read)) == pattern(count: size))
    }

    @Test func echoServerEchoesEveryByteToManyClients() async throws {
        guard let server = try EchoServerProcess() else { return }
        defer { withExtendedLifetime(server) {} }  // the server runs until the test ends
        let port = server.port

        let executor = try RingExecutor(entries: 128)
        defer { executor.shutdownGracefully() }
        let clients = 64
        let results = try await executor.run { () async throws -> [Bool] in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        let socket = try await executor.socket()
                        defer { try? socket.close() }
                        try await executor.connect(socket, to: .loopback(port: port))
                        let payload = pattern(count: 64 << 10, from: client * 977)
                        async let sent: Void = executor.send(socket, bytes: payload)
                        var echoed: [UInt8] = []
                        while echoed.count < payload.count {
                            let chunk = try await executor.receive(socket, upTo: 16 << 10)
                            if chunk.isEmpty { break }
                            echoed += chunk
                        }
                        try await sent
                        return echoed == payload
                    }
                }
                var all: [Bool] = []
                for try await ok in group { all.append(ok) }
                return all
            }
        }
        #expect(results.count == clients)
        #expect(results.allSatisfy { $0 })
    }
}

/// ring-probe's --require, as scripts use it to check a host.
@Suite(.timeLimit(.minutes(3))) struct ProbeToolTests {
    @Test func requireNamesEnginesAndSaysWhatIsMissing() async throws {
        guard let probe = ExampleTests.binary("ring-probe") else { return }
        let ok = try await runProcess(probe, ["--require", "io_uring,posix-aio,NOP"], standardError: true)
        #expect(ok.status == 0, "\(ok.output)")
        let libaio = try await runProcess(probe, ["--require", "libaio"], standardError: true)
        let libaioStarts =
            (try? RingExecutor(entries: 4, engine: .libaio))
            .map { executor in
                executor.shutdownGracefully(); return true
            } ?? false
        if libaioStarts {
            #expect(libaio.status == 0, "\(libaio.output)")
        } else {
            #expect(libaio.status == 1 && libaio.output.contains("missing: libaio ("), "\(libaio.output)")
        }
        let unknown = try await runProcess(probe, ["--require", "libaio,posix"], standardError: true)
        #expect(unknown.status == 2 && unknown.output.contains("unknown capability: posix"), "\(unknown.output)")
    }
}
