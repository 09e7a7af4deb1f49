import ModelFolder

extension ModelSummary {
    /// The summary of `model`, with sizes its config leaves to a family's defaults taken
    /// from that family's descriptor (e.g. GPT-2's `n_inner: null`, which means 4 × hidden).
    public init(_ model: ModelFolder, registry: DescriptorRegistry) {
        self.init(model)
        guard let config = model.config?.json, let type = config["model_type"]?.stringValue,
            let descriptor = registry.descriptor(for: type),
            let binding = try? AxisBinding(descriptor: descriptor, config: config, path: model.path)
        else { return }
        var axes: [String: (keys: [String], size: Int)] = [:]
        for (axis, spec) in descriptor.axes {
            if !spec.keys.isEmpty, let size = binding.size(axis) { axes[axis.rawValue] = (spec.keys, size) }
        }
        self = filling(from: axes)
    }
}
