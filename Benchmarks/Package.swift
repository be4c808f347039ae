// swift-tools-version:6.0
// What Swift users pick today for file I/O, measured against RingExec on the same workload:
// SwiftNIO's NIOFileSystem and blocking pread in tasks on the global executor; plus an executor
// scheduling microbenchmark. A separate package so users of swift-ring never fetch SwiftNIO.
//   cd Benchmarks && swift run -c release ring-peers
// And ring-http-nio, the SwiftNIO twin of Examples/ring-http, measured against it by ./http-bench.
import PackageDescription

let package = Package(
    name: "swift-ring-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-ring", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .executableTarget(
            name: "ring-peers",
            dependencies: [
                .product(name: "RingExec", package: "swift-ring"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The SwiftNIO twin of Examples/ring-http, for http-bench.
        .executableTarget(
            name: "ring-http-nio",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
