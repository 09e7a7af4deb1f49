import ModelFolder
import PareFormat

/// Chooses how each output tensor is stored in `.pare` output.
struct PareEncodingPolicy {
    let input: ModelFolder

    /// The item's own encoding, the source's when the data is the same bytes or a cast of
    /// them (a cast keeps zeros zero), else one chosen from the source's bytes for whole
    /// copies and casts, else byte grouping for floats.
    func encoding(for item: OutputItem) -> PareEncoding {
        if let encoding = item.encoding { return encoding }
        let dtype = item.entry.dtype
        let fallback: PareEncoding = item.entry.byteCount >= PareEncoding.smallTensorBytes && dtype.isCastable ? .byteGroup : .raw
        guard item.isWholeCopy else { return item.contents != nil && item.entry.byteCount < PareEncoding.smallTensorBytes ? .raw : fallback }
        let chosen: PareEncoding
        switch input.shards[item.source.shard] {
        case .pare(let file, _):
            chosen = file.tensor(named: item.source.info.name)?.encoding ?? fallback
        case .safetensors(let file):
            let info = item.source.info
            chosen = file.withBytes(of: info) { PareEncoding.choose(dtype: info.dtype, shape: info.shape, bytes: $0) }
        }
        if chosen == .raw, item.entry.byteCount >= PareEncoding.smallTensorBytes, dtype.isCastable { return .byteGroup }
        if chosen != .raw, !chosen.accepts(dtype) { return fallback }
        if item.entry.byteCount < PareEncoding.smallTensorBytes { return .raw }
        return chosen
    }

    /// The `.pare` writer's entries for `items`.
    func entries(_ items: [OutputItem]) -> [PareWriter.Entry] {
        items.map { PareWriter.Entry(name: $0.entry.name, dtype: $0.entry.dtype, shape: $0.entry.shape, encoding: encoding(for: $0)) }
    }
}
