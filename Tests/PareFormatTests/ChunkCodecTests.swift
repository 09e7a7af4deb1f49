import Testing
import Tensors
import TestSupport

@testable import PareFormat

/// `ChunkCodec` against `formats/pare.md` ("Encodings"): round trips for every encoding and
/// dtype, the content of every frame checked against a naive encoder written from the spec,
/// hand-built chunks decoded, damaged chunks rejected with a reason naming the frame (never
/// a crash or a write outside the destination), and the checksums that catch what zstd
/// cannot.
@Suite struct ChunkCodecTests {
    // MARK: Helpers

    struct Chunk: Equatable {
        var stored: [UInt8]
        var streams: [Int]

        /// The chunk's frames, cut where `streams` says.
        var frames: [[UInt8]] {
            var start = 0
            return streams.map { length in
                defer { start += length }
                return Array(stored[start..<(start + length)])
            }
        }

        init(stored: [UInt8], streams: [Int]) {
            self.stored = stored
            self.streams = streams
        }

        /// A chunk made of `frames` back to back, as the spec lays them out.
        init(frames: [[UInt8]]) {
            self.init(stored: frames.flatMap { $0 }, streams: frames.map(\.count))
        }
    }

    struct DecodeFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// One dtype stored one way; `width` is the whole bytes per element the codec is given
    /// (0 for sub-byte kinds, which only `raw` stores).
    struct Case: Sendable, CustomTestStringConvertible {
        var dtype: DType
        var encoding: PareEncoding
        var width: Int { dtype.bitWidth / 8 }
        var testDescription: String { "\(dtype.name) \(encoding.name)\(pattern.map { " \($0)" } ?? "")" }
        var pattern: NMPacking.Pattern? { if case .nm(let p) = encoding { return p } else { return nil } }

        /// Element counts to try: empty, tiny, around byte and mask boundaries, odd sizes;
        /// whole groups for N:M and whole bytes for sub-byte kinds.
        var counts: [Int] {
            if let m = pattern?.m { return [0, m, 2 * m, 3 * m, 8 * m, 33 * m, 400 * m] }
            return [0, 1, 2, 3, 7, 8, 9, 15, 17, 63, 64, 65, 1000, 4099].filter { $0 * dtype.bitWidth % 8 == 0 }
        }
    }

    static let encodings: [PareEncoding] = [
        .raw, .byteGroup, .bitmask,
        .nm(NMPacking.Pattern(n: 2, m: 4)!), .nm(NMPacking.Pattern(n: 1, m: 2)!), .nm(NMPacking.Pattern(n: 4, m: 8)!),
        .nm(NMPacking.Pattern(n: 3, m: 16)!), .nm(NMPacking.Pattern(n: 2, m: 6)!), .nm(NMPacking.Pattern(n: 1, m: 4)!),
    ]

    /// Every dtype with every encoding that accepts it.
    static let cases: [Case] = DType.allCases.flatMap { dtype in
        encodings.filter { $0.accepts(dtype) }.map { Case(dtype: dtype, encoding: $0) }
    }

    static let compressedCases = cases.filter { $0.encoding != .raw }

    /// Encodes `source` as the writer does (elements from the byte count and the bit width).
    static func encode(
        _ source: [UInt8], _ c: Case, exponents: Zstd.Setting = .entropy
    ) -> Result<Chunk, ChunkCodec.NMViolation> {
        let elements = source.count * 8 / c.dtype.bitWidth
        let levels = ChunkCodec.levels(encoding: c.encoding, width: c.width, exponents: exponents)
        let input = UnsafeMutableRawPointer.allocate(byteCount: max(1, source.count), alignment: 64)
        defer { input.deallocate() }
        source.withUnsafeBytes { if !$0.isEmpty { input.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        let output = ScratchBuffer()
        return ChunkCodec.encode(
            UnsafeRawBufferPointer(start: input, count: source.count), elements: elements, width: c.width,
            encoding: c.encoding, levels: levels, output: output
        ).map { Chunk(stored: Array($0.bytes), streams: $0.streams) }
    }

    /// Encodes data known to fit the encoding.
    static func encoded(_ source: [UInt8], _ c: Case, exponents: Zstd.Setting = .entropy) throws -> Chunk {
        switch encode(source, c, exponents: exponents) {
        case .success(let chunk): return chunk
        case .failure(let violation): throw DecodeFailure(message: "group \(violation.group) breaks the pattern")
        }
    }

    static let guardBytes = 64
    static let sentinel: UInt8 = 0xA5

    /// Decodes `chunk` into a destination of exactly `elements` elements followed by guard
    /// bytes; records an issue if the decoder writes past the destination.
    static func decode(_ chunk: Chunk, elements: Int, _ c: Case) -> Result<[UInt8], DecodeFailure> {
        let bytes = elements * c.dtype.bitWidth / 8
        let stored = UnsafeMutableRawPointer.allocate(byteCount: max(1, chunk.stored.count), alignment: 64)
        defer { stored.deallocate() }
        chunk.stored.withUnsafeBytes { if !$0.isEmpty { stored.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        let destination = UnsafeMutableRawPointer.allocate(byteCount: bytes + guardBytes, alignment: 64)
        defer { destination.deallocate() }
        destination.initializeMemory(as: UInt8.self, repeating: sentinel, count: bytes + guardBytes)
        let problem = ChunkCodec.decode(
            UnsafeRawBufferPointer(start: stored, count: chunk.stored.count), streams: chunk.streams, elements: elements,
            width: c.width, encoding: c.encoding, into: destination)
        let after = UnsafeRawBufferPointer(start: destination + bytes, count: guardBytes)
        #expect(after.allSatisfy { $0 == sentinel }, "decode wrote past the chunk's \(bytes) bytes")
        if let problem { return .failure(DecodeFailure(message: problem)) }
        return .success(Array(UnsafeRawBufferPointer(start: destination, count: bytes)))
    }

    /// The failure message of a decode that must fail.
    static func failure(_ chunk: Chunk, elements: Int, _ c: Case) -> String? {
        switch decode(chunk, elements: elements, c) {
        case .success:
            Issue.record("a damaged \(c.testDescription) chunk decoded without complaint")
            return nil
        case .failure(let failure):
            return failure.message
        }
    }

    /// One zstd frame of `bytes` (as a writer following the spec would make it).
    static func frame(_ bytes: [UInt8]) -> [UInt8] {
        let capacity = Zstd.bound(bytes.count)
        var out = [UInt8](repeating: 0, count: capacity)
        let written = (bytes + [0]).withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                Zstd.compress(UnsafeRawBufferPointer(rebasing: src[..<bytes.count]), setting: .entropy, into: dst.baseAddress!,
                              capacity: capacity)
            }
        }
        return Array(out[..<written])
    }

    /// The content of a frame, which must decompress to exactly `expected` bytes.
    static func contents(_ frame: [UInt8], expected: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: expected + 1)
        let problem = (frame + [0]).withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                Zstd.decompress(UnsafeRawBufferPointer(rebasing: src[..<frame.count]), into: dst.baseAddress!, expected: expected)
            }
        }
        if let problem {
            Issue.record("frame: \(problem)")
            return nil
        }
        return Array(out[..<expected])
    }

    // MARK: Naive encoders from the spec

    /// Stream k holds byte k of every element.
    static func planes(_ bytes: [UInt8], width: Int) -> [[UInt8]] {
        (0..<width).map { k in stride(from: k, to: bytes.count, by: width).map { bytes[$0] } }
    }

    static func isZero(_ bytes: [UInt8], element i: Int, width: Int) -> Bool {
        bytes[(i * width)..<((i + 1) * width)].allSatisfy { $0 == 0 }
    }

    /// One bit per element, 1 = non-zero, element i is bit (i mod 8) of byte ⌊i/8⌋.
    static func mask(_ bytes: [UInt8], width: Int) -> [UInt8] {
        let count = bytes.count / width
        var mask = [UInt8](repeating: 0, count: (count + 7) / 8)
        for i in 0..<count where !isZero(bytes, element: i, width: width) { mask[i / 8] |= UInt8(1 << (i % 8)) }
        return mask
    }

    static func nonZeroElements(_ bytes: [UInt8], width: Int) -> [UInt8] {
        (0..<(bytes.count / width)).filter { !isZero(bytes, element: $0, width: width) }
            .flatMap { bytes[($0 * width)..<(($0 + 1) * width)] }
    }

    /// ⌈log2 M⌉, at least 1.
    static func positionBits(m: Int) -> Int {
        var b = 1
        while 1 << b < m { b += 1 }
        return b
    }

    /// N positions per group (its non-zero ones plus the lowest zero ones, increasing) and
    /// the elements there.
    static func nmPack(_ bytes: [UInt8], width: Int, n: Int, m: Int) -> (positions: [Int], values: [UInt8]) {
        var positions: [Int] = [], values: [UInt8] = []
        for start in stride(from: 0, to: bytes.count / width, by: m) {
            var kept = (0..<m).filter { !isZero(bytes, element: start + $0, width: width) }
            for j in 0..<m where kept.count < n && !kept.contains(j) { kept.append(j) }
            kept.sort()
            positions += kept
            values += kept.flatMap { bytes[((start + $0) * width)..<((start + $0 + 1) * width)] }
        }
        return (positions, values)
    }

    /// Fields of `bits` bits, the k-th at stream bits k·b…, LSB first, zero-padded.
    static func bitStream(_ fields: [Int], bits: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (fields.count * bits + 7) / 8)
        for (k, field) in fields.enumerated() {
            for j in 0..<bits where field >> j & 1 == 1 {
                let bit = k * bits + j
                out[bit / 8] |= UInt8(1 << (bit % 8))
            }
        }
        return out
    }

    // MARK: Data

    /// Random elements with about 40 % all-zero ones and some negative zeros (sign bit
    /// only); made N:M sparse (0…N values per group) for N:M cases.
    static func data(_ c: Case, count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        let byteCount = count * c.dtype.bitWidth / 8
        var bytes = (0..<byteCount).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let width = c.width
        guard width > 0 else { return bytes }
        for i in 0..<count {
            let roll = rng.next() % 10
            if roll < 4 {
                for b in 0..<width { bytes[i * width + b] = 0 }
            } else if roll == 4 {
                for b in 0..<width { bytes[i * width + b] = 0 }
                bytes[i * width + width - 1] = 0x80
            }
        }
        if let pattern = c.pattern {
            for start in stride(from: 0, to: count, by: pattern.m) {
                var keep = Set<Int>()
                let want = Int(rng.next() % UInt64(pattern.n + 1))
                while keep.count < want { keep.insert(Int(rng.next() % UInt64(pattern.m))) }
                for j in 0..<pattern.m where !keep.contains(j) {
                    for b in 0..<width { bytes[(start + j) * width + b] = 0 }
                }
            }
        }
        return bytes
    }

    // MARK: Levels

    @Test(arguments: [DType.u8, .bf16, .f16, .f32, .f64])
    func exponentStreamsGetTheStrongLevel(dtype: DType) {
        let width = dtype.bitWidth / 8
        // formats/pare.md: stream 1 of F16/BF16, streams 2 and 3 of F32, 6 and 7 of F64.
        let table: [Int: Set<Int>] = [2: [1], 4: [2, 3], 8: [6, 7]]
        let exponents = table[width] ?? []
        let strong = Zstd.Setting.level(9)
        let values = (0..<width).map { exponents.contains($0) ? strong : Zstd.Setting.entropy }
        #expect(ChunkCodec.levels(encoding: .byteGroup, width: width, exponents: strong) == values)
        #expect(ChunkCodec.levels(encoding: .raw, width: width, exponents: strong).isEmpty)
        if dtype == .bf16 || dtype == .f16 || dtype == .f32 {
            // Positions follow the values; the mask comes first; both get the strong level.
            let nm = PareEncoding.nm(NMPacking.Pattern(n: 2, m: 4)!)
            #expect(ChunkCodec.levels(encoding: nm, width: width, exponents: strong) == values + [strong])
            #expect(ChunkCodec.levels(encoding: .bitmask, width: width, exponents: strong) == [strong] + values)
        }
        for encoding in Self.encodings where encoding.accepts(dtype) {
            #expect(ChunkCodec.levels(encoding: encoding, width: width, exponents: .entropy).allSatisfy { $0 == .entropy })
            #expect(ChunkCodec.levels(encoding: encoding, width: width, exponents: strong).count == encoding.frameCount(width: width))
        }
        #expect(strong.recorded == 9 && Zstd.Setting.entropy.recorded == 0)
    }

    // MARK: Round trips

    @Test(arguments: cases)
    func roundTripsEveryCountAndLevel(_ c: Case) throws {
        for count in c.counts {
            for exponents in [Zstd.Setting.entropy, .level(3)] {
                let source = Self.data(c, count: count, seed: UInt64(count * 131 + c.dtype.bitWidth))
                let chunk = try Self.encoded(source, c, exponents: exponents)
                #expect(chunk.streams.count == c.encoding.frameCount(width: c.width))
                if c.encoding == .raw {
                    #expect(chunk.stored == source)  // unchanged, no frames
                } else {
                    #expect(chunk.streams.reduce(0, +) == chunk.stored.count)
                }
                let decoded = Self.decode(chunk, elements: count, c)
                #expect((try? decoded.get()) == source, "\(count) elements: \(decoded)")
            }
        }
    }

    @Test(arguments: [DType.bf16, .f32])
    func roundTripsEdgeValues(dtype: DType) throws {
        // All zeros, all negative zeros, all ones, NaN/infinity patterns, one non-zero last.
        let width = dtype.bitWidth / 8
        let count = 96
        let patterns: [[UInt8]] = [
            [UInt8](repeating: 0, count: count * width),
            (0..<count).flatMap { _ in [UInt8](repeating: 0, count: width - 1) + [0x80] },
            [UInt8](repeating: 0xFF, count: count * width),
            (0..<count).flatMap { _ in [UInt8](repeating: 0, count: width - 2) + [0x80, 0x7F] },
            [UInt8](repeating: 0, count: count * width - 1) + [1],
        ]
        for encoding in Self.encodings where encoding.accepts(dtype) {
            let c = Case(dtype: dtype, encoding: encoding)
            for source in patterns {
                // For N:M, the first group with more than N non-zero elements, by counting.
                let firstDense = c.pattern.flatMap { p in
                    (0..<(count / p.m)).first { g in
                        (0..<p.m).filter { !Self.isZero(source, element: g * p.m + $0, width: width) }.count > p.n
                    }
                }
                switch Self.encode(source, c) {
                case .failure(let violation):
                    #expect(violation.group == firstDense, "\(c.testDescription)")
                case .success(let chunk):
                    #expect(firstDense == nil, "\(c.testDescription) packed a dense group")
                    #expect((try? Self.decode(chunk, elements: count, c).get()) == source, "\(c.testDescription)")
                }
            }
        }
    }

    // MARK: Frame contents, against the spec

    @Test(arguments: compressedCases)
    func framesHoldWhatTheSpecSays(_ c: Case) throws {
        let width = c.width
        for count in c.counts {
            let source = Self.data(c, count: count, seed: UInt64(count + 7))
            let frames = try Self.encoded(source, c).frames
            var expected: [(content: [UInt8], what: String)]
            switch c.encoding {
            case .byteGroup:
                expected = Self.planes(source, width: width).enumerated().map { ($1, "stream \($0)") }
            case .bitmask:
                let values = Self.nonZeroElements(source, width: width)
                expected = [(Self.mask(source, width: width), "mask")]
                    + Self.planes(values, width: width).enumerated().map { ($1, "value stream \($0)") }
            case .nm(let pattern):
                let packed = Self.nmPack(source, width: width, n: pattern.n, m: pattern.m)
                #expect(packed.values.count == count / pattern.m * pattern.n * width)
                expected = Self.planes(packed.values, width: width).enumerated().map { ($1, "value stream \($0)") }
                    + [(Self.bitStream(packed.positions, bits: Self.positionBits(m: pattern.m)), "positions")]
            case .raw:
                expected = []
            }
            #expect(frames.count == expected.count)
            for (frame, want) in zip(frames, expected) {
                #expect(Self.contents(frame, expected: want.content.count) == want.content, "\(count) elements, \(want.what)")
            }
        }
    }

    /// 2:4 over three BF16 groups, worked by hand: [0, A, 0, B], [C, 0, 0, 0], [0, 0, 0, 0].
    /// Positions (1, 3), (0, 1), (0, 1) in two bits each, the first in the low bits:
    /// 1 | 3<<2 | 0<<4 | 1<<6 = 0x4D, then 0 | 1<<2 = 0x04. Values A, B, C, 0, 0, 0.
    @Test func aHandWorkedTwoOfFourChunk() throws {
        let a: [UInt8] = [0x11, 0x3F], b: [UInt8] = [0x22, 0xBF], cc: [UInt8] = [0x00, 0x80]  // C is -0.0
        let z: [UInt8] = [0, 0]
        let source = z + a + z + b + cc + z + z + z + z + z + z + z
        let c = Case(dtype: .bf16, encoding: .nm(NMPacking.Pattern(n: 2, m: 4)!))
        let frames = try Self.encoded(source, c).frames
        #expect(frames.count == 3)
        #expect(Self.contents(frames[0], expected: 6) == [0x11, 0x22, 0x00, 0, 0, 0])
        #expect(Self.contents(frames[1], expected: 6) == [0x3F, 0xBF, 0x80, 0, 0, 0])
        #expect(Self.contents(frames[2], expected: 2) == [0x4D, 0x04])
        // And the same chunk built by hand decodes to the tensor.
        let byHand = Chunk(frames: [Self.frame([0x11, 0x22, 0x00, 0, 0, 0]), Self.frame([0x3F, 0xBF, 0x80, 0, 0, 0]),
                                    Self.frame([0x4D, 0x04])])
        #expect((try? Self.decode(byHand, elements: 12, c).get()) == source)
    }

    /// 1:8 (three-bit positions that straddle bytes), by hand: groups with their value at
    /// 5, 7 and 6, the last group all zeros (position 0). Fields 101, 111, 110, 000 at bits
    /// 0-2, 3-5, 6-8, 9-11 (LSB first): byte 0 = bits 1,0,1,1,1,1,0,1 = 0xBD, byte 1 = 0x01.
    @Test func aHandWorkedOneOfEightChunk() throws {
        var source = [UInt8](repeating: 0, count: 32 * 4)  // F32, four groups of 8
        func set(_ element: Int, _ value: UInt32) {
            withUnsafeBytes(of: value.littleEndian) { source.replaceSubrange((element * 4)..<(element * 4 + 4), with: $0) }
        }
        set(5, 0x3F80_0000)
        set(15, 0xC000_0000)
        set(22, 0x0000_0001)
        let c = Case(dtype: .f32, encoding: .nm(NMPacking.Pattern(n: 1, m: 8)!))
        let frames = try Self.encoded(source, c).frames
        #expect(frames.count == 5)
        #expect(Self.contents(frames[4], expected: 2) == [0xBD, 0x01])
        #expect(Self.contents(frames[3], expected: 4) == [0x3F, 0xC0, 0x00, 0x00])
        #expect(Self.contents(frames[0], expected: 4) == [0x00, 0x00, 0x01, 0x00])
        let byHand = Chunk(frames: [Self.frame([0, 0, 1, 0]), Self.frame([0, 0, 0, 0]), Self.frame([0x80, 0, 0, 0]),
                                    Self.frame([0x3F, 0xC0, 0, 0]), Self.frame([0xBD, 0x01])])
        #expect((try? Self.decode(byHand, elements: 32, c).get()) == source)
    }

    /// Bitmask over nine BF16 elements, by hand: non-zero at 1 (0x1234), 3 (-0.0) and 8
    /// (0x00FF): mask 0b0000_1010, 0b0000_0001; low bytes 34 00 FF, high bytes 12 80 00.
    @Test func aHandWorkedBitmaskChunk() throws {
        let source: [UInt8] = [0, 0, 0x34, 0x12, 0, 0, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0x00]
        let c = Case(dtype: .bf16, encoding: .bitmask)
        let frames = try Self.encoded(source, c).frames
        #expect(frames.count == 3)
        #expect(Self.contents(frames[0], expected: 2) == [0x0A, 0x01])
        #expect(Self.contents(frames[1], expected: 3) == [0x34, 0x00, 0xFF])
        #expect(Self.contents(frames[2], expected: 3) == [0x12, 0x80, 0x00])
        let byHand = Chunk(frames: [Self.frame([0x0A, 0x01]), Self.frame([0x34, 0x00, 0xFF]), Self.frame([0x12, 0x80, 0x00])])
        #expect((try? Self.decode(byHand, elements: 9, c).get()) == source)
    }

    @Test func aHandBuiltByteGroupChunkDecodes() {
        // Two F32 elements 0x3F800000 (1.0) and 0xC0490FDB (-π), stream by stream.
        let c = Case(dtype: .f32, encoding: .byteGroup)
        let byHand = Chunk(frames: [Self.frame([0x00, 0xDB]), Self.frame([0x00, 0x0F]), Self.frame([0x80, 0x49]),
                                    Self.frame([0x3F, 0xC0])])
        #expect((try? Self.decode(byHand, elements: 2, c).get()) == [0x00, 0x00, 0x80, 0x3F, 0xDB, 0x0F, 0x49, 0xC0])
    }

    // MARK: N:M violations

    @Test(arguments: [(2, 4, 0), (2, 4, 5), (2, 4, 17), (1, 4, 3), (4, 8, 2), (3, 16, 1), (1, 2, 9), (2, 6, 4)])
    func reportsTheFirstGroupThatBreaksThePattern(n: Int, m: Int, bad: Int) throws {
        for dtype in [DType.bf16, .f32] {
            let c = Case(dtype: dtype, encoding: .nm(NMPacking.Pattern(n: n, m: m)!))
            let width = c.width
            let groups = 20
            // Every group holds exactly N non-zero elements, group `bad` and the last one N + 1.
            var source = [UInt8](repeating: 0, count: groups * m * width)
            for g in 0..<groups {
                let values = g == bad || g == groups - 1 ? n + 1 : n
                for j in 0..<values { source[(g * m + (j * 7) % m) * width + width - 1] = 0x3C }
            }
            switch Self.encode(source, c) {
            case .success: Issue.record("\(c.testDescription): dense group \(bad) was packed")
            case .failure(let violation): #expect(violation.group == bad, "\(c.testDescription)")
            }
        }
    }

    // MARK: Damaged chunks

    @Test(arguments: compressedCases.filter { $0.dtype == .bf16 || $0.dtype == .f32 || $0.dtype == .u8 })
    func truncatedFramesAreRejectedNamingTheFrame(_ c: Case) throws {
        let count = (c.pattern?.m ?? 1) * 40
        let source = Self.data(c, count: count, seed: 77)
        let chunk = try Self.encoded(source, c)
        for k in chunk.streams.indices {
            // The frame one byte short, and the frame gone.
            for cut in [1, chunk.streams[k]] {
                var frames = chunk.frames
                frames[k].removeLast(cut)
                let message = Self.failure(Chunk(frames: frames), elements: count, c)
                #expect(message?.hasPrefix("frame \(k)") == true, "cut \(cut) of frame \(k): \(message ?? "")")
            }
        }
    }

    @Test(arguments: compressedCases.filter { $0.dtype == .bf16 || $0.dtype == .f32 })
    func framesThatAreNotZstdAreRejected(_ c: Case) throws {
        let count = (c.pattern?.m ?? 1) * 40
        let chunk = try Self.encoded(Self.data(c, count: count, seed: 5), c)
        for k in chunk.streams.indices {
            var frames = chunk.frames
            frames[k] = [UInt8](repeating: 0, count: 16)
            let message = Self.failure(Chunk(frames: frames), elements: count, c) ?? ""
            #expect(message.hasPrefix("frame \(k)\(Self.frameName(c, k)) "), "\(message)")
            #expect(message.contains("not a zstd frame"), "\(message)")
        }
    }

    /// What the decoder calls frame `k` besides its number.
    static func frameName(_ c: Case, _ k: Int) -> String {
        switch c.encoding {
        case .nm where k == c.width: return " (positions)"
        case .bitmask where k == 0: return " (mask)"
        default: return ""
        }
    }

    @Test func framesOfTheWrongSizeAreRejected() throws {
        let c = Case(dtype: .bf16, encoding: .byteGroup)
        // Three elements: stream 1 holds two bytes, or four.
        for wrong in [[UInt8]([1, 2]), [1, 2, 3, 4]] {
            let chunk = Chunk(frames: [Self.frame([1, 2, 3]), Self.frame(wrong)])
            let message = Self.failure(chunk, elements: 3, c) ?? ""
            #expect(message.hasPrefix("frame 1 ") && message.contains("\(wrong.count) bytes") && message.contains("3 were expected"),
                    "\(message)")
        }
        // Frames in the wrong order: the mask where a value stream belongs.
        let bitmask = Case(dtype: .bf16, encoding: .bitmask)
        let source = Self.data(bitmask, count: 100, seed: 3)
        let frames = try Self.encoded(source, bitmask).frames
        let message = Self.failure(Chunk(frames: [frames[1], frames[0], frames[2]]), elements: 100, bitmask)
        #expect(message?.hasPrefix("frame 0 (mask) declares") == true, "\(message ?? "")")
    }

    @Test func aMaskWithPaddingBitsSetIsRejected() {
        let c = Case(dtype: .bf16, encoding: .bitmask)
        // Nine elements: bit 1 of byte 1 is padding. Value frames for ten values.
        let values = [UInt8](repeating: 7, count: 10)
        let chunk = Chunk(frames: [Self.frame([0xFF, 0x03]), Self.frame(values), Self.frame(values)])
        let message = Self.failure(chunk, elements: 9, c) ?? ""
        #expect(message.contains("mask") && message.contains("past the chunk's last element"), "\(message)")
        // The same mask over ten elements sets no padding bit: bits 8 and 9 are elements.
        #expect((try? Self.decode(chunk, elements: 10, c).get()) == [UInt8](repeating: 7, count: 20))
    }

    @Test func aMaskAnnouncingMoreValuesThanStoredIsRejected() {
        let c = Case(dtype: .f32, encoding: .bitmask)
        // Eight set bits, value streams of four bytes.
        let four = [UInt8](repeating: 1, count: 4)
        let chunk = Chunk(frames: [Self.frame([0xFF])] + (0..<4).map { _ in Self.frame(four) })
        let message = Self.failure(chunk, elements: 8, c) ?? ""
        #expect(message.hasPrefix("frame 1 ") && message.contains("8 were expected"), "\(message)")
    }

    @Test(arguments: [
        // (n, m, positions of group 1: not increasing, repeated, or out of the group)
        (2, 4, [2, 1]), (2, 4, [1, 1]), (2, 4, [3, 0]),
        (2, 8, [5, 5]), (2, 8, [6, 2]), (3, 16, [0, 15, 15]), (4, 8, [0, 1, 3, 2]),
        (2, 6, [0, 6]), (2, 6, [7, 7]), (1, 6, [6]), (1, 3, [3]),
    ])
    func positionsThatDoNotIncreaseAreRejected(n: Int, m: Int, badPositions: [Int]) {
        let pattern = NMPacking.Pattern(n: n, m: m)!
        let c = Case(dtype: .bf16, encoding: .nm(pattern))
        // Three groups: 0 and 2 valid (positions 0..<n), 1 damaged.
        let positions = Array(0..<n) + badPositions + Array(0..<n)
        let values = [UInt8](repeating: 0x3F, count: 3 * n)
        let chunk = Chunk(frames: [Self.frame(values), Self.frame(values),
                                   Self.frame(Self.bitStream(positions, bits: Self.positionBits(m: m)))])
        let message = Self.failure(chunk, elements: 3 * m, c) ?? ""
        #expect(message.hasPrefix("group 1 "), "\(message)")
        // The same chunk with group 1 repaired decodes.
        let repaired = Chunk(frames: [Self.frame(values), Self.frame(values),
                                      Self.frame(Self.bitStream(Array(0..<n) + Array((m - n)..<m) + Array(0..<n),
                                                                bits: Self.positionBits(m: m)))])
        let decoded = try? Self.decode(repaired, elements: 3 * m, c).get()
        #expect(decoded?.count == 3 * m * 2)
        #expect(decoded.map { Self.nonZeroElements($0, width: 2).count / 2 } == 3 * n)
    }

    // MARK: Checksums

    /// Writes one tensor per encoding (BF16, several chunks each, a short last one).
    static func writeFile(_ path: String) throws -> [(name: String, bytes: [UInt8])] {
        let count = 2500
        let tensors: [(PareWriter.Entry, [UInt8])] = Self.encodings.prefix(4).enumerated().map { i, encoding in
            let c = Case(dtype: .bf16, encoding: encoding)
            let shape: [UInt64] = c.pattern == nil ? [UInt64(count)] : [UInt64(count / 20), 20]
            return (PareWriter.Entry(name: "t\(i)-\(encoding.name)", dtype: .bf16, shape: shape, encoding: encoding),
                    Self.data(c, count: count, seed: UInt64(i)))
        }
        let writer = try PareWriter(path: path, entries: tensors.map(\.0), metadata: [], options: .init(chunkElements: 640))
        for (_, bytes) in tensors { try writer.write(bytes) }
        try writer.finish(sync: false)
        return tensors.map { ($0.0.name, $0.1) }
    }

    static func decodeTensor(_ file: PareFile, _ tensor: PareTensor) throws(PareError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(tensor.size))
        let result = out.withUnsafeMutableBytes { buffer in Result { () throws(PareError) in try file.decode(tensor, into: buffer) } }
        try result.get()
        return out
    }

    /// A flipped byte in any chunk of any encoding fails that chunk's checksum, naming the
    /// tensor and the chunk; the other tensors still decode.
    @Test func aFlippedStoredByteFailsTheChunkChecksum() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("m.pare")
        let tensors = try Self.writeFile(path)
        let original = try readBytes(path)
        let clean = try PareFile.open(path: path)
        var rng = SplitMix64(seed: 21)
        for (name, bytes) in tensors {
            let tensor = try #require(clean.tensor(named: name))
            #expect(tensor.chunks.count > 2)
            #expect(try Self.decodeTensor(clean, tensor) == bytes)
            for (i, chunk) in tensor.chunks.enumerated() {
                // The spec's checksums, computed here: chunk CRC over the stored bytes.
                let stored = Array(original[Int(chunk.offset)..<Int(chunk.end)])
                #expect(CRC32C.checksum(stored) == chunk.crc32c)
                var damaged = original
                damaged[Int(chunk.offset) + Int(rng.next() % chunk.length)] ^= UInt8(1 << (rng.next() % 8))
                let corrupt = directory.file("corrupt-\(name)-\(i).pare")
                try writeBytes(damaged, to: corrupt)
                let file = try PareFile.open(path: corrupt)
                #expect {
                    try Self.decodeTensor(file, try #require(file.tensor(named: name)))
                } throws: { error in
                    guard let error = error as? PareError, case .invalid(_, let tensor, let rule, let detail) = error else { return false }
                    return tensor == name && rule == .chunkChecksum && detail.hasPrefix("chunk \(i) ")
                }
                for (other, otherBytes) in tensors where other != name {
                    #expect(try Self.decodeTensor(file, try #require(file.tensor(named: other))) == otherBytes)
                }
            }
        }
        #expect(CRC32C.checksum(tensors[0].bytes) == clean.tensors[0].crc32c)
    }

    /// Damage behind a chunk checksum that was recomputed (as a careless tool would): the
    /// frame checks or the tensor checksum still refuse it; data is never wrong silently.
    @Test func damageBehindARecomputedChunkChecksumIsStillCaught() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("m.pare")
        let tensors = try Self.writeFile(path)
        let original = try readBytes(path)
        var rng = SplitMix64(seed: 22)
        var refusals: [PareError.Rule: Int] = [:]
        var trial = 0
        for (name, bytes) in tensors {
            for _ in 0..<25 {
                var damaged = original
                let clean = try PareFile.open(path: path)
                var tensor = try #require(clean.tensor(named: name))
                let i = Int(rng.next() % UInt64(tensor.chunks.count))
                let chunk = tensor.chunks[i]
                let offset = Int(chunk.offset) + Int(rng.next() % chunk.length)
                damaged[offset] ^= UInt8(1 << (rng.next() % 8))
                tensor.chunks[i].crc32c = CRC32C.checksum(Array(damaged[Int(chunk.offset)..<Int(chunk.end)]))
                let corrupt = directory.file("corrupt-\(trial).pare")
                trial += 1
                try writeBytes(damaged, to: corrupt)
                let file = try PareFile.open(path: corrupt)
                do {
                    let decoded = try Self.decodeTensor(file, tensor)
                    // zstd may decode some damage to the same bytes; it must not decode to others.
                    #expect(decoded == bytes, "\(name): damage at byte \(offset) decoded silently to other data")
                } catch {
                    guard case .invalid(_, let owner, let rule, _) = error else {
                        Issue.record("unexpected \(error)")
                        continue
                    }
                    #expect(owner == name)
                    #expect(rule == .frame || rule == .tensorChecksum, "\(error)")
                    refusals[rule, default: 0] += 1
                }
            }
        }
        // A raw chunk has no frames: only the tensor checksum can notice, and it must.
        #expect(refusals[.tensorChecksum, default: 0] >= 25)
    }

    // MARK: Chunk boundaries

    /// Every chunk of a written tensor is its elements on their own: decoded alone, it gives
    /// back exactly its slice of the tensor. Chunks at 64-byte offsets, in order, covering
    /// the tensor; N:M chunks hold whole rows.
    @Test(arguments: cases.filter { [.bf16, .f32, .u8, .f64].contains($0.dtype) })
    func everyChunkDecodesOnItsOwn(_ c: Case) throws {
        let directory = TemporaryDirectory()
        for (count, chunkElements) in [(1, 64), (8, 8), (9, 8), (1000, 64), (1001, 1000), (2500, 256), (96, 1 << 20)] {
            let row = c.pattern.map { $0.m * 3 } ?? 1
            let elements = (count + row - 1) / row * row
            let source = Self.data(c, count: elements, seed: UInt64(count))
            let shape: [UInt64] = c.pattern == nil ? [UInt64(elements)] : [UInt64(elements / row), UInt64(row)]
            let path = directory.file("\(count)-\(chunkElements).pare")
            let writer = try PareWriter(path: path, entries: [PareWriter.Entry(name: "t", dtype: c.dtype, shape: shape, encoding: c.encoding)],
                                        metadata: [], options: .init(chunkElements: chunkElements))
            try writer.write(source)
            try writer.finish(sync: false)
            let file = try PareFile.open(path: path)
            let tensor = try #require(file.tensor(named: "t"))
            let bytes = try readBytes(path)
            #expect(tensor.crc32c == CRC32C.checksum(source))
            #expect(tensor.chunks.reduce(0) { $0 + Int($1.elements) } == elements)
            #expect(Set(tensor.chunks.dropLast().map(\.elements)).count <= 1, "chunks other than the last differ in size")
            var start = 0
            var previousEnd = 0
            for chunk in tensor.chunks {
                #expect(chunk.offset % 64 == 0 && Int(chunk.offset) >= previousEnd)
                previousEnd = Int(chunk.end)
                if c.pattern != nil { #expect(Int(chunk.elements) % row == 0) }
                let n = Int(chunk.elements)
                let stored = Chunk(stored: Array(bytes[Int(chunk.offset)..<Int(chunk.end)]), streams: chunk.streams.map { Int($0) })
                let slice = Array(source[(start * c.width)..<((start + n) * c.width)])
                #expect((try? Self.decode(stored, elements: n, c).get()) == slice, "\(count) elements, chunk at \(start)")
                start += n
            }
            #expect(try Self.decodeTensor(file, tensor) == source)
        }
    }
}
