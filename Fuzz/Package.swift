// swift-tools-version:6.0
// Fuzz targets for swift-ring's pure logic. A separate package so the main one never builds with
// the fuzzer runtime. Build and run with ./run (it passes -sanitize=fuzzer,address).
import PackageDescription

let targets = ["FuzzRingIndices", "FuzzEncoders", "FuzzCompletions", "FuzzLayoutAndProbe", "FuzzExecutorTable"]

let package = Package(
    name: "swift-ring-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-ring", path: ".."),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .target(name: "CFuzzerDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzerDriver"], swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
        + targets.map { name in
            .executableTarget(
                name: name,
                dependencies: [
                    "FuzzSupport", .product(name: "Ring", package: "swift-ring"),
                    .product(name: "RingExec", package: "swift-ring"),
                    .product(name: "SystemPackage", package: "swift-system"),
                ],
                swiftSettings: [.swiftLanguageMode(.v6)]
            )
        }
)
