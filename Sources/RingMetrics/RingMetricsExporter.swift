public import CoreMetrics
public import RingExec

/// Publishes a `RingExecutor`'s statistics through swift-metrics, for the metrics backend the
/// program has bootstrapped (Prometheus, OpenTelemetry, statsd, ...).
///
/// Each `update()` reads `executor.statistics()` once and reports what changed since the previous
/// update: every named counter as a swift-metrics `Counter` labelled
/// `<label>_<name>_total` (`ring_submitted_total`, `ring_failed_ECONNRESET_total`, ...), the
/// operations in flight as the gauge `<label>_in_flight`, and the latency quantiles of the
/// operations finished in that interval as gauges `<label>_latency_p50_seconds`, `_p99_` and
/// `_p999_` (upper bounds of power-of-two buckets). `run(every:)` updates periodically until its
/// task is cancelled.
///
/// A separate product: programs that do not ask for `RingMetrics` never build or link
/// swift-metrics.
public actor RingMetricsExporter {
    public nonisolated let executor: RingExecutor
    private let label: String
    private let dimensions: [(String, String)]
    private let factory: any MetricsFactory
    private var counters: [String: Counter] = [:]
    private var reported: [String: Int] = [:]
    private var reportedLatency = RingExecutor.LatencyHistogram()
    private let inFlight: Gauge
    private let latencyGauges: [(fraction: Double, gauge: Gauge)]

    /// - Parameters:
    ///   - label: the prefix of every metric's label.
    ///   - dimensions: added to every metric (e.g. `[("executor", "accept")]` to tell executors
    ///     of one group apart).
    ///   - factory: the metrics backend; by default the one `MetricsSystem` was bootstrapped with.
    public init(
        executor: RingExecutor, label: String = "ring", dimensions: [(String, String)] = [],
        factory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.executor = executor
        self.label = label
        self.dimensions = dimensions
        self.factory = factory
        inFlight = Gauge(label: "\(label)_in_flight", dimensions: dimensions, factory: factory)
        latencyGauges = [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")].map { fraction, name in
            (fraction, Gauge(label: "\(label)_latency_\(name)_seconds", dimensions: dimensions, factory: factory))
        }
    }

    /// Reads the executor's statistics and reports the changes since the last update.
    public func update() async {
        let statistics = await executor.statistics()
        for (name, value) in statistics.namedCounters {
            let delta = value - reported[name, default: 0]
            guard delta > 0 else { continue }
            counter(name).increment(by: Int64(delta))
            reported[name] = value
        }
        inFlight.record(executor.operationsInFlight)
        // Two updates can interleave at the await above; an older snapshot arriving second must
        // not move the baseline back (the counters above are safe: they only report growth).
        guard statistics.latency.total >= reportedLatency.total else { return }
        let recent = statistics.latency.subtracting(reportedLatency)
        reportedLatency = statistics.latency
        for (fraction, gauge) in latencyGauges {
            guard let quantile = recent.quantile(fraction) else { continue }
            let (seconds, attoseconds) = quantile.components
            gauge.record(Double(seconds) + Double(attoseconds) / 1e18)
        }
    }

    /// Updates now and then every `interval`, until the calling task is cancelled (then it
    /// returns without throwing).
    public func run(every interval: Duration = .seconds(10)) async {
        while !Task.isCancelled {
            await update()
            try? await Task.sleep(for: interval)
        }
    }

    private func counter(_ name: String) -> Counter {
        if let existing = counters[name] { return existing }
        let created = Counter(label: "\(label)_\(name)_total", dimensions: dimensions, factory: factory)
        counters[name] = created
        return created
    }
}
