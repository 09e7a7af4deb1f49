import Testing
import Tensors
import TestSupport
@testable import PareFormat
import CKernels

/// Bytes of `count` BF16-like values: a realistic exponent spread, mantissas random.
private func floatBytes(count: Int, width: Int, seed: UInt64, zeroEvery: Int = 0) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count * width)
    for i in 0..<count {
        if zeroEvery > 0, i % zeroEvery == 0 { continue }
        let value = Float(Double(Int64(bitPattern: rng.next()) % 1_000_000) / 1e7)
        let bits = value.bitPattern
        switch width {
        case 1: bytes[i] = UInt8(truncatingIfNeeded: bits >> 24)
        case 2: withUnsafeBytes(of: UInt16(bits >> 16).littleEndian) { bytes.replaceSubrange((2 * i)..<(2 * i + 2), with: $0) }
        default: withUnsafeBytes(of: bits.littleEndian) { bytes.replaceSubrange((4 * i)..<(4 * i + 4), with: $0) }
        }
    }
    return bytes
}

/// Keeps at most `n` elements of each group of `m` (exactly `n` when `exact`), at seeded positions.
private func nmSparse(_ bytes: [UInt8], width: Int, n: Int, m: Int, seed: UInt64, exact: Bool = false) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    var out = bytes
    let count = bytes.count / width
    for group in stride(from: 0, to: count, by: m) {
        var keep = Set<Int>()
        let want = exact ? n : Int(rng.next() % UInt64(n + 1))  // 0...n kept: fewer than N happens too
        while keep.count < want { keep.insert(Int(rng.next() % UInt64(m))) }
        for j in 0..<m where !keep.contains(j) {
            for b in 0..<width { out[(group + j) * width + b] = 0 }
        }
    }
    return out
}

private func write(_ tensors: [(PareWriter.Entry, [UInt8])], to path: String, options: PareWriter.Options = .init(), piece: Int = 1 << 30) throws {
    let writer = try PareWriter(path: path, entries: tensors.map(\.0), metadata: [("format", "pt")], options: options)
    for (_, bytes) in tensors {
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + piece)
            try writer.write(Array(bytes[start..<end]))
            start = end
        }
    }
    try writer.finish(sync: false)
}

private func decoded(_ file: PareFile, _ name: String) throws -> [UInt8] {
    let tensor = try #require(file.tensor(named: name))
    var out = [UInt8](repeating: 0, count: Int(tensor.size))
    try out.withUnsafeMutableBytes { try file.decode(tensor, into: $0) }
    return out
}

@Test func crc32cMatchesTheCheckValue() {
    let check = Array("123456789".utf8)
    #expect(CRC32C.checksum(check) == 0xE306_9283)
    // Chaining, and the table path against the instruction path on odd lengths.
    #expect(CRC32C.checksum(Array(check[4...]), continuing: CRC32C.checksum(Array(check[..<4]))) == 0xE306_9283)
    var rng = SplitMix64(seed: 7)
    let data = (0..<1001).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    for length in [0, 1, 7, 8, 9, 63, 1001] {
        let slice = Array(data[..<length])
        let portable = slice.withUnsafeBytes { pare_crc32c_portable(0, $0.baseAddress, length) }
        #expect(CRC32C.checksum(slice) == portable)
    }
}

@Test(arguments: [
    (DType.bf16, PareEncoding.byteGroup), (.f32, .byteGroup), (.f16, .byteGroup), (.u8, .byteGroup), (.i64, .raw),
    (.bf16, .bitmask), (.f32, .bitmask),
])
func roundTripsDenseEncodings(dtype: DType, encoding: PareEncoding) throws {
    let directory = TemporaryDirectory()
    let width = dtype.bitWidth / 8
    // Chunks of 1000 elements: several chunks, a short last one, batches across the buffer.
    let options = PareWriter.Options(chunkElements: 1000)
    let count = 12_345
    let bytes = floatBytes(count: count, width: width == 1 ? 1 : (width == 8 ? 4 : width), seed: 1, zeroEvery: 3)
    let payload = width == 8 ? bytes + bytes : bytes
    let entry = PareWriter.Entry(name: "t", dtype: dtype, shape: [UInt64(count)], encoding: encoding)
    let empty = PareWriter.Entry(name: "empty", dtype: dtype, shape: [0, 4], encoding: encoding)
    let path = directory.file("m.pare")
    try write([(empty, []), (entry, payload), (empty.renamed("empty2"), [])], to: path, options: options, piece: 777)
    let file = try PareFile.open(path: path)
    #expect(file.tensors.map(\.name) == ["empty", "t", "empty2"])
    #expect(file.tensor(named: "t")?.chunks.count == 13)
    #expect(file.metadata.map(\.key) == ["format"])
    #expect(try decoded(file, "t") == payload)
    #expect(try decoded(file, "empty").isEmpty)
    try file.verify()
}

@Test(arguments: [(2, 4), (4, 8), (1, 4), (1, 2), (3, 16)])
func roundTripsNMSparseTensors(n: Int, m: Int) throws {
    let directory = TemporaryDirectory()
    for (dtype, width) in [(DType.bf16, 2), (.f32, 4)] {
        let rows = 37, columns = 64
        var bytes = nmSparse(floatBytes(count: rows * columns, width: width, seed: 3), width: width, n: n, m: m, seed: 4)
        // A negative zero is a value, not a zero.
        for b in 0..<width { bytes[b] = 0 }
        bytes[width - 1] = 0x80
        let pattern = try #require(NMPacking.Pattern(n: n, m: m))
        let entry = PareWriter.Entry(name: "w", dtype: dtype, shape: [UInt64(rows), UInt64(columns)], encoding: .nm(pattern))
        let path = directory.file("nm-\(dtype).pare")
        try write([(entry, bytes)], to: path, options: .init(chunkElements: 640))
        let file = try PareFile.open(path: path)
        let tensor = try #require(file.tensor(named: "w"))
        #expect(tensor.chunks.allSatisfy { $0.elements % UInt64(columns) == 0 })
        #expect(try decoded(file, "w") == bytes)
        // What convert would choose for such data: an N:M pattern no denser than the truth.
        let chosen = bytes.withUnsafeBytes { PareEncoding.choose(dtype: dtype, shape: entry.shape, bytes: $0) }
        if case .nm(let found) = chosen { #expect(Double(found.n) / Double(found.m) <= Double(n) / Double(m)) }
    }
}

@Test func refusesDataThatBreaksItsNMPattern() throws {
    let directory = TemporaryDirectory()
    let bytes = floatBytes(count: 64, width: 2, seed: 5)
    let entry = PareWriter.Entry(name: "dense", dtype: .bf16, shape: [4, 16], encoding: .nm(NMPacking.Pattern(n: 2, m: 4)!))
    #expect {
        try write([(entry, bytes)], to: directory.file("bad.pare"))
    } throws: { error in
        guard let error = error as? PareError, case .unencodable(_, let tensor, let detail) = error else { return false }
        return tensor == "dense" && detail.contains("not 2:4 sparse")
    }
}

@Test func choosesEncodingsByContent() {
    func choose(_ dtype: DType, _ shape: [UInt64], _ bytes: [UInt8]) -> PareEncoding {
        bytes.withUnsafeBytes { PareEncoding.choose(dtype: dtype, shape: shape, bytes: $0) }
    }
    let dense = floatBytes(count: 4096, width: 2, seed: 9)
    #expect(choose(.bf16, [64, 64], dense) == .byteGroup)
    #expect(choose(.bf16, [64, 64], nmSparse(dense, width: 2, n: 2, m: 4, seed: 1, exact: true)) == .nm(NMPacking.Pattern(n: 2, m: 4)!))
    #expect(choose(.bf16, [64, 64], floatBytes(count: 4096, width: 2, seed: 9, zeroEvery: 2)) == .nm(NMPacking.Pattern(n: 1, m: 2)!))
    #expect(choose(.bf16, [64, 64], floatBytes(count: 4096, width: 2, seed: 9, zeroEvery: 3)) == .bitmask)
    #expect(choose(.i32, [64, 64], dense + dense) == .raw)
    #expect(choose(.bf16, [8], Array(dense[..<16])) == .raw)
}

/// Every single-bit flip is caught: by the header, footer or index checks when opening, or
/// by a chunk, tensor or padding check naming the tensor when verifying.
@Test func catchesEveryFlippedBit() throws {
    let directory = TemporaryDirectory()
    let width = 2
    let a = floatBytes(count: 3000, width: width, seed: 11)
    let b = nmSparse(floatBytes(count: 2048, width: width, seed: 12), width: width, n: 2, m: 4, seed: 13)
    let entries = [
        (PareWriter.Entry(name: "a", dtype: .bf16, shape: [3000], encoding: .byteGroup), a),
        (PareWriter.Entry(name: "b", dtype: .bf16, shape: [32, 64], encoding: .nm(NMPacking.Pattern(n: 2, m: 4)!)), b),
        (PareWriter.Entry(name: "c", dtype: .i8, shape: [100], encoding: .raw), [UInt8](repeating: 7, count: 100)),
    ]
    let path = directory.file("m.pare")
    try write(entries, to: path, options: .init(chunkElements: 1024))
    let original = try readBytes(path)
    let clean = try PareFile.open(path: path)
    // Which tensor owns each byte: its chunks and the padding after them.
    var owner = [String](repeating: "", count: original.count)
    var previous = ""
    var position = PareFile.headerSize
    for tensor in clean.tensors {
        for chunk in tensor.chunks {
            for i in position..<Int(chunk.offset) { owner[i] = previous }
            for i in Int(chunk.offset)..<Int(chunk.end) { owner[i] = tensor.name }
            position = Int(chunk.end)
            previous = tensor.name
        }
    }
    for i in position..<Int(clean.indexOffset) { owner[i] = previous }

    var rng = SplitMix64(seed: 99)
    let corrupt = directory.file("corrupt.pare")
    for _ in 0..<400 {
        let offset = Int(rng.next() % UInt64(original.count))
        var bytes = original
        bytes[offset] ^= 1 << UInt8(rng.next() % 8)
        try FileSystem.removeTree(corrupt)
        try writeBytes(bytes, to: corrupt)
        var caught: PareError?
        do {
            let file = try PareFile.open(path: corrupt)
            try file.verify()
        } catch {
            caught = error
        }
        let error = try #require(caught, "a flip at byte \(offset) went unnoticed")
        guard case .invalid(_, let tensor, _, _) = error else {
            Issue.record("unexpected error \(error)")
            continue
        }
        #expect(tensor == owner[offset], "flip at \(offset): \(error)")
    }
}

extension PareWriter.Entry {
    func renamed(_ name: String) -> Self {
        var copy = self
        copy.name = name
        return copy
    }
}

/// Rewrites a file's index through `edit` and fixes the footer, so that only the rule
/// under test is broken.
private func withEditedIndex(_ original: [UInt8], _ edit: (inout String) -> Void) -> [UInt8] {
    let footer = original.count - 32
    let offset = original[footer..<(footer + 8)].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    var text = String(decoding: original[offset..<footer], as: UTF8.self)
    edit(&text)
    var bytes = Array(original[..<offset]) + Array(text.utf8)
    bytes.appendLittleEndian(UInt64(offset))
    bytes.appendLittleEndian(UInt64(text.utf8.count))
    bytes.appendLittleEndian(CRC32C.checksum(Array(text.utf8)))
    bytes.appendLittleEndian(UInt32(0))
    return bytes + PareFile.magic
}

@Test(arguments: [
    ([("\"elements\":1000,", "\"elements\":268435456000,")], "chunk-layout"),
    // A tensor that claims 2^40 bytes, in a first chunk that would decode to almost all of it.
    ([("\"shape\":[3000]", "\"shape\":[549755813888]"), ("\"size\":6000", "\"size\":1099511627776"),
      ("\"elements\":1000,", "\"elements\":549755811888,")], "chunk-layout"),
    ([("\"name\":\"b\"", "\"name\":\"a\"")], "duplicate-tensor"),
    ([("\"encoding\":\"bytegroup-zstd\"", "\"encoding\":\"lz4\"")], "unknown-encoding"),
    ([("\"dtype\":\"BF16\"", "\"dtype\":\"BF17\"")], "unknown-dtype"),
    ([("\"size\":6000", "\"size\":6002")], "size"),
    ([("\"offset\":64,", "\"offset\":96,")], "chunk-layout"),
    ([("\"format\":\"pare\"", "\"format\":\"zip\"")], "index-structure"),
])
func rejectsIndexesThatBreakARule(edits: [(String, String)], rule: String) throws {
    let directory = TemporaryDirectory()
    let path = directory.file("m.pare")
    let a = floatBytes(count: 3000, width: 2, seed: 1)
    try write([(PareWriter.Entry(name: "a", dtype: .bf16, shape: [3000], encoding: .byteGroup), a),
               (PareWriter.Entry(name: "b", dtype: .bf16, shape: [3000], encoding: .byteGroup), a)],
              to: path, options: .init(chunkElements: 1000))
    let original = try readBytes(path)
    let edited = withEditedIndex(original) { text in
        for (find, replace) in edits {
            #expect(text.contains(find), "the index has no \(find)")
            if let range = text.firstRange(of: find) { text.replaceSubrange(range, with: replace) }
        }
    }
    let bad = directory.file("bad.pare")
    try writeBytes(edited, to: bad)
    #expect {
        try PareFile.open(path: bad)
    } throws: { error in
        (error as? PareError)?.rule == rule
    }
}

@Test func combinesCRCsOfAdjacentPieces() {
    var rng = SplitMix64(seed: 3)
    let data = (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    for split in [0, 1, 7, 64, 2500, 4999, 5000] {
        let a = CRC32C.checksum(Array(data[..<split])), b = CRC32C.checksum(Array(data[split...]))
        #expect(CRC32C.combine(a, b, secondLength: data.count - split) == CRC32C.checksum(data))
    }
}
