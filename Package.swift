// swift-tools-version:6.0
import PackageDescription

// Dependencies point down the pipeline only:
// pare (CLI) -> ModelFolder -> SafeTensors -> Tensors, OrderedJSON
let package = Package(
    name: "pare",
    products: [
        .executable(name: "pare", targets: ["pare"]),
        .library(name: "ModelFolder", targets: ["ModelFolder"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
        .library(name: "Tensors", targets: ["Tensors"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .target(name: "OrderedJSON"),
        .target(name: "CSystemShims"),
        .target(name: "Tensors", dependencies: ["CSystemShims"]),
        .target(name: "SafeTensors", dependencies: ["Tensors", "OrderedJSON"]),
        .target(name: "ModelFolder", dependencies: ["SafeTensors", "Tensors", "OrderedJSON"]),
        .executableTarget(
            name: "pare",
            dependencies: [
                "ModelFolder",
                "OrderedJSON",
                "Tensors",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "TestSupport", dependencies: ["Tensors"], path: "Tests/TestSupport"),
        .testTarget(name: "OrderedJSONTests", dependencies: ["OrderedJSON"]),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "TestSupport"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TestSupport"]),
        .testTarget(name: "ModelFolderTests", dependencies: ["ModelFolder", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
