import MetricsTestKit
import RingExec
import RingMetrics
import SystemPackage
import Testing

/// The swift-metrics adapter reports deltas of the executor's counters, once each.
@Suite(.timeLimit(.minutes(1))) struct RingMetricsExporterTests {
    @Test func updatesReportWhatChangedSinceTheLastUpdate() async throws {
        let metrics = TestMetrics()
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let exporter = RingMetricsExporter(
            executor: executor, label: "test", dimensions: [("executor", "one")], factory: metrics)
        try await executor.run { for _ in 0..<10 { try await executor.nop() } }
        await exporter.update()
        let dimensions = [("executor", "one")]
        #expect(try metrics.expectCounter("test_submitted_total", dimensions).totalValue == 10)
        #expect(try metrics.expectCounter("test_completed_total", dimensions).totalValue == 10)
        #expect(try metrics.expectGauge("test_latency_p99_seconds", dimensions).lastValue ?? -1 >= 0)
        #expect(try metrics.expectGauge("test_in_flight", dimensions).lastValue == 0)

        // Five more, one of them failing: the counters grow by exactly that.
        try await executor.run { for _ in 0..<4 { try await executor.nop() } }
        _ = try? await executor.read(FileDescriptor(rawValue: 999_999), upTo: 1, offset: 0)
        await exporter.update()
        #expect(try metrics.expectCounter("test_submitted_total", dimensions).totalValue == 15)
        #expect(try metrics.expectCounter("test_failed_total", dimensions).totalValue == 1)
        #expect(try metrics.expectCounter("test_failed_EBADF_total", dimensions).totalValue == 1)

        // Nothing new: nothing reported.
        await exporter.update()
        #expect(try metrics.expectCounter("test_submitted_total", dimensions).totalValue == 15)
    }

    @Test func runUpdatesUntilCancelled() async throws {
        let metrics = TestMetrics()
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let exporter = RingMetricsExporter(executor: executor, factory: metrics)
        try await executor.run { try await executor.nop() }
        let running = Task { await exporter.run(every: .milliseconds(5)) }
        while (try? metrics.expectCounter("ring_submitted_total").totalValue) != 1 {
            try await Task.sleep(for: .milliseconds(5))
        }
        running.cancel()
        await running.value  // returns once cancelled
    }
}
