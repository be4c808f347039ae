// swift-tools-version:6.3
// 6.3: RingExecutor+Scheduling.swift uses the runtime's scheduling hooks (`SchedulingExecutor`,
// experimental SPI first shipped with Swift 6.3); older toolchains stop here with SwiftPM's message.
// Linux only: Sources/CSyscalls stops the build with one #error on any other system. A package that
// also builds elsewhere depends on Ring/RingExec with `condition: .when(platforms: [.linux])`.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "swift-ring",
    // No `platforms:` floor: nothing here builds off Linux, and a floor would be imposed on
    // cross-platform packages that depend on swift-ring only under `.when(platforms: [.linux])`.
    products: [
        .library(name: "Ring", targets: ["Ring"]),
        .library(name: "RingExec", targets: ["RingExec"]),
        .executable(name: "ring-probe", targets: ["ring-probe"]),
        .executable(name: "ring-bench", targets: ["ring-bench"]),
        .library(name: "RingInspect", targets: ["RingInspect"]),
        .executable(name: "ring-top", targets: ["ring-top"]),
        // swift-metrics for an executor's counters: only packages that use this product link it.
        .library(name: "RingMetrics", targets: ["RingMetrics"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // ring-bench only (latency percentiles); target-based resolution keeps it away from
        // packages that depend on Ring or RingExec.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // RingMetrics only (an opt-in product; RingExec users never build or link it).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        // The only C in the package: raw system calls returning -errno.
        .target(name: "CSyscalls"),
        .target(
            name: "Ring",
            dependencies: [
                "CSyscalls",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "RingExec",
            dependencies: [
                "Ring", "CSyscalls",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // Reading io_uring descriptors of any process through /proc (fdinfo); no ArgumentParser.
        .target(name: "RingInspect", dependencies: ["Ring"], swiftSettings: strict),
        .target(
            name: "RingMetrics",
            dependencies: ["RingExec", .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: strict
        ),
        // The tools' shared conventions (stderr messages, exit statuses, progress, JSON).
        .target(
            name: "RingToolSupport",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ring-probe",
            dependencies: [
                "Ring", "RingExec", "RingToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ring-top",
            dependencies: [
                "RingExec", "RingInspect", "RingToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ring-bench",
            dependencies: [
                "Ring", "RingExec", "RingToolSupport",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Examples, compiled in CI and driven by RingExecTests/ExampleTests.
        .executableTarget(
            name: "ring-cp",
            dependencies: ["RingExec", .product(name: "SystemPackage", package: "swift-system")],
            path: "Examples/ring-cp",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ring-echo",
            dependencies: ["RingExec", .product(name: "SystemPackage", package: "swift-system")],
            path: "Examples/ring-echo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ring-http",
            dependencies: ["RingExec", .product(name: "SystemPackage", package: "swift-system")],
            path: "Examples/ring-http",
            swiftSettings: strict
        ),
        // Test-only: installs a seccomp filter, then reports what the library does under it.
        .executableTarget(
            name: "ring-fault-helper",
            dependencies: ["Ring", "RingExec", "CSyscalls", .product(name: "SystemPackage", package: "swift-system")],
            path: "Tests/FaultHelper",
            swiftSettings: strict
        ),
        // Data-integrity soak (checksummed blocks, cancelled writes), run by CI and by hand.
        .executableTarget(
            name: "ring-soak",
            dependencies: ["RingExec", .product(name: "SystemPackage", package: "swift-system")],
            path: "Tests/Soak",
            swiftSettings: strict
        ),
        // Test-only: exposes what the system's (older) <linux/io_uring.h> says, to check our ABI.
        .target(name: "CKernelHeader", path: "Tests/CKernelHeader"),
        .testTarget(
            name: "RingExecTests",
            dependencies: [
                "RingExec", "Ring", "CKernelHeader", "RingToolSupport", "RingInspect",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "RingMetricsTests",
            dependencies: [
                "RingMetrics", "RingExec",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "RingTests",
            dependencies: [
                "Ring", "CKernelHeader",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
    ]
)

// Documentation: `SWIFT_RING_DOCS=1 swift package generate-documentation` (CI does this). The DocC
// plugin is added only when asked for, so packages that depend on Ring or RingExec never fetch it.
// SPI_GENERATE_DOCS is what the Swift Package Index sets when it builds documentation.
if Context.environment["SWIFT_RING_DOCS"] == "1" || Context.environment["SPI_GENERATE_DOCS"] != nil {
    package.dependencies.append(.package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"))
}
