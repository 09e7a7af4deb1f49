import Tensors

/// The architecture descriptors pare knows, by `model_type`.
public struct DescriptorRegistry: Sendable {
    public private(set) var descriptors: [ArchitectureDescriptor] = []

    public init(_ descriptors: [ArchitectureDescriptor] = []) {
        for descriptor in descriptors { add(descriptor) }
    }

    /// Adds a descriptor; a later one wins for the model types both claim.
    public mutating func add(_ descriptor: ArchitectureDescriptor) {
        descriptors.append(descriptor)
    }

    public func descriptor(for modelType: String) -> ArchitectureDescriptor? {
        descriptors.last { $0.modelTypes.contains(modelType) }
    }

    public var modelTypes: [String] { Array(Set(descriptors.flatMap(\.modelTypes))).sorted() }

    /// The descriptors embedded in pare at build time (from `formats/*.json`).
    public static let builtin: DescriptorRegistry = {
        var registry = DescriptorRegistry()
        for (name, bytes) in BuiltinDescriptors.files {
            // The embedded files are checked by the test suite; a broken one is a build bug.
            let descriptor = try! ArchitectureDescriptor.decode(bytes, source: "formats/\(name)")
            registry.add(descriptor)
        }
        return registry
    }()

    /// The built-in descriptors plus every `*.json` in `directory` (which win on conflicts).
    public static func loading(directory: String) throws(GraphError) -> DescriptorRegistry {
        var registry = builtin
        let names: [String]
        do { names = try FileSystem.list(directory) } catch {
            throw .descriptorInvalid(source: directory, problem: error.description)
        }
        for name in names where name.hasSuffix(".json") {
            let path = PathName.join(directory, name)
            let bytes: [UInt8]
            do { bytes = try MappedFile(path: path).withBytes { Array($0) } } catch {
                throw .descriptorInvalid(source: path, problem: error.description)
            }
            registry.add(try ArchitectureDescriptor.decode(bytes, source: path))
        }
        return registry
    }
}
