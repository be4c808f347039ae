import Foundation
import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// The opt-in inspection socket (issue 19): another process — here a plain blocking client on a
/// thread of its own — reads the executors' counters and in-flight lists. One service per
/// process, so the suite runs its tests one at a time (they take the same socket name).
@Suite(.serialized, .timeLimit(.minutes(1))) struct InspectionServiceTests {
    /// Connects to the abstract socket of this process and reads to the end; the errno when the
    /// connection is refused.
    static func query() async -> Result<String, Errno> {
        // The project's pthread lock, which ThreadSanitizer sees (it does not see Mutex on Linux).
        final class Box: @unchecked Sendable {
            let lock = Lock()
            var value: Result<String, Errno> = .failure(.invalidArgument)
        }
        let result = Box()
        await onOwnThread {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { close(fd) }
            var (address, length) = InspectionService.abstractAddress(InspectionService.socketName())
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
            }
            guard connected == 0 else {
                let error = Errno(rawValue: errno)
                result.lock.withLock { result.value = .failure(error) }
                return
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(fd, &chunk, chunk.count)
                if count <= 0 { break }
                bytes += chunk[0..<count]
            }
            result.lock.withLock { result.value = .success(String(decoding: bytes, as: UTF8.self)) }
        }
        return result.lock.withLock { result.value }
    }

    @Test func anotherProcessReadsTheStalledReceiveAndTheCountersUntilStopped() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        #expect(await Self.query() == .failure(.connectionRefused), "nothing listens before start")
        let service = try InspectionService.start(on: executor)
        #expect(throws: Errno.addressInUse, "one service per process") { try InspectionService.start(on: executor) }

        let (a, b) = try socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let stalled = Task { try await executor.receive(b, upTo: 100) }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        let text = try await Self.query().get()
        let document = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        #expect(document["pid"] as? Int == Int(getpid()))
        let executors = try #require(document["executors"] as? [[String: Any]])
        let ours = try #require(executors.first { $0["id"] as? Int == Int(executor.wakeID) }, "\(text)")
        #expect(ours["engine"] as? String == "io_uring")
        let counters = try #require(ours["counters"] as? [String: Int])
        #expect(counters["submitted"] ?? 0 >= 1)
        let inFlight = try #require(ours["inFlight"] as? [[String: Any]])
        let receive = try #require(inFlight.first { $0["fd"] as? Int == Int(b.rawValue) }, "\(text)")
        #expect(receive["operation"] as? String == "recv" && receive["length"] as? Int == 100)
        #expect(receive["state"] as? String == "submitted" && (receive["ageSeconds"] as? Double ?? -1) >= 0)

        stalled.cancel()
        _ = try? await stalled.value
        await service.stop()
        #expect(await Self.query() == .failure(.connectionRefused), "the name is gone after stop")
        // A second stop closes nothing: a descriptor opened since under the same number survives.
        let (c, d) = try socketPair()
        defer {
            try? c.close()
            try? d.close()
        }
        await service.stop()
        #expect(fcntl(c.rawValue, F_GETFD) >= 0 && fcntl(d.rawValue, F_GETFD) >= 0)
        // And free to be taken again.
        let again = try InspectionService.start(on: executor)
        await again.stop()
    }

    /// Regression: on an engine that cannot accept (the aio engines), or an executor that has
    /// shut down, the service took its name and never answered: clients waited in its backlog
    /// until their own timeouts, and once the backlog was full a blocking connect waited for
    /// good. Refused now, before the name is taken.
    @Test func anExecutorThatCannotAcceptIsRefused() async throws {
        guard let executor = try makeExecutor(.posixAIO) else { return }
        defer { executor.shutdownGracefully() }
        do {
            let service = try InspectionService.start(on: executor)
            await service.stop()
            Issue.record("started on an engine that cannot accept connections")
        } catch {
            #expect(error == .notSupported)
        }
        // Nor on an executor that has shut down.
        guard let finished = try makeExecutor(.ioURing) else { return }
        finished.shutdownGracefully()
        do {
            let service = try InspectionService.start(on: finished)
            await service.stop()
            Issue.record("started on an executor that has shut down")
        } catch {
            #expect(error == Errno(rawValue: ESHUTDOWN))
        }
    }
}
