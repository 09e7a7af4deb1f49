// libFuzzer entry point for the safetensors header parser (built by tools/fuzz/run.sh,
// which compiles this file into one module with OrderedJSON, Tensors and SafeTensors).
//
// Any input must either parse into a header that satisfies the format's invariants or be
// rejected with a typed error; a crash, a hang, an address-sanitizer report or a broken
// invariant is a bug.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    do {
        let header = try SafeTensorsHeader.parse(file: bytes, path: "fuzz.safetensors")
        var end: UInt64 = 0
        var names = Set<String>()
        for tensor in header.tensors {
            precondition(tensor.dataOffsets.lowerBound == end, "accepted a gap or overlap")
            precondition(names.insert(tensor.name).inserted, "accepted a duplicate name")
            guard case .bytes(let count) = tensor.dtype.byteCount(elements: Shape.elementCount(tensor.shape)!) else {
                preconditionFailure("accepted a shape without a byte count")
            }
            precondition(count == tensor.byteCount, "accepted a wrong span")
            end = tensor.dataOffsets.upperBound
        }
        precondition(UInt64(header.dataStart) + end == UInt64(size), "accepted a wrong data size")
    } catch {
        precondition(!error.description.isEmpty && !error.rule.isEmpty)
    }
    // The JSON parser alone, on the raw bytes.
    _ = try? JSONParser.parse(bytes)
    return 0
}
