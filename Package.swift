// swift-tools-version:6.0
import PackageDescription

// Dependencies point down the pipeline only:
// pare (CLI) -> Passes -> Emit -> ModelGraph -> ModelFolder -> SafeTensors, PareFormat -> Tensors, OrderedJSON
// and, beside the passes, pare -> Runtime (the executor) -> ModelGraph
let package = Package(
    name: "pare",
    products: [
        .executable(name: "pare", targets: ["pare"]),
        .library(name: "Emit", targets: ["Emit"]),
        .library(name: "Runtime", targets: ["Runtime"]),
        .library(name: "ModelGraph", targets: ["ModelGraph"]),
        .library(name: "ModelFolder", targets: ["ModelFolder"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
        .library(name: "PareFormat", targets: ["PareFormat"]),
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "Tokenizer", targets: ["Tokenizer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .target(name: "OrderedJSON"),
        .target(name: "CSystemShims"),
        .target(name: "CKernels"),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "Tensors", dependencies: ["CSystemShims", "CKernels"]),
        .target(name: "SafeTensors", dependencies: ["Tensors", "OrderedJSON"]),
        .target(name: "PareFormat", dependencies: ["Tensors", "OrderedJSON", "CKernels", "CZstd"]),
        .target(name: "ModelFolder", dependencies: ["SafeTensors", "PareFormat", "Tensors", "OrderedJSON"]),
        .target(
            name: "ModelGraph",
            dependencies: [
                "ModelFolder", "SafeTensors", "Tensors", "OrderedJSON",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // formats/ (through a link) is compiled into the binary; only descriptors.
            exclude: ["formats/README.md", "formats/pare.md"],
            resources: [.embedInCode("formats")]
        ),
        .target(name: "Emit", dependencies: ["ModelGraph", "ModelFolder", "SafeTensors", "PareFormat", "Tensors", "OrderedJSON"]),
        .target(name: "Runtime", dependencies: ["ModelGraph", "ModelFolder", "SafeTensors", "Tensors", "OrderedJSON", "COpenBLAS"]),
        .target(name: "Tokenizer", dependencies: ["OrderedJSON"]),
        .target(name: "Calibration", dependencies: ["Runtime", "ModelGraph", "ModelFolder", "SafeTensors", "Tensors"]),
        .target(
            name: "Passes",
            dependencies: [
                "Emit", "ModelGraph", "ModelFolder", "SafeTensors", "PareFormat", "Tensors", "OrderedJSON",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "pare",
            dependencies: [
                "Passes",
                "Runtime",
                "Calibration",
                "Tokenizer",
                "CSystemShims",
                "Emit",
                "ModelGraph",
                "ModelFolder",
                "PareFormat",
                "OrderedJSON",
                "Tensors",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "TestSupport", dependencies: ["Tensors"], path: "Tests/TestSupport"),
        .testTarget(name: "OrderedJSONTests", dependencies: ["OrderedJSON"]),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "TestSupport"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TestSupport"]),
        .testTarget(name: "PareFormatTests", dependencies: ["PareFormat", "Tensors", "TestSupport"]),
        .testTarget(name: "ModelFolderTests", dependencies: ["ModelFolder", "TestSupport"]),
        .testTarget(name: "EmitTests", dependencies: ["Emit", "ModelGraph", "ModelFolder", "TestSupport"]),
        .testTarget(name: "PassesTests", dependencies: ["Passes", "Emit", "ModelGraph", "ModelFolder", "TestSupport"]),
        .testTarget(name: "CalibrationTests", dependencies: ["Calibration", "Passes", "Emit", "Runtime", "ModelGraph", "ModelFolder", "SafeTensors", "Tensors", "TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "ModelGraph", "ModelFolder", "SafeTensors", "OrderedJSON", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "OrderedJSON", "TestSupport"]),
        .testTarget(name: "ModelGraphTests", dependencies: ["ModelGraph", "ModelFolder", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
