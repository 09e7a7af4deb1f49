import Tensors

/// Encodes and decodes one chunk: the unit of compression, checksum and parallel work.
enum ChunkCodec {
    /// An encoded chunk: its stored bytes (in the output buffer the caller gave) and the
    /// length of each zstd frame in them.
    struct Encoded {
        var bytes: UnsafeRawBufferPointer
        var streams: [Int]
    }

    /// Which byte streams of a `width`-byte float carry exponent bits (they compress well
    /// and earn a slower, stronger level).
    static func exponentStreams(width: Int) -> Set<Int> {
        switch width {
        case 2: return [1]
        case 4: return [2, 3]
        case 8: return [6, 7]
        default: return []
        }
    }

    /// The zstd setting of each frame of a chunk, in frame order: `exponents` for the
    /// byte streams with exponent bits, masks and positions, entropy coding for the rest.
    static func levels(encoding: PareEncoding, width: Int, exponents exponentLevel: Zstd.Setting) -> [Zstd.Setting] {
        let exponents = exponentStreams(width: width)
        let valueLevels = (0..<width).map { exponents.contains($0) ? exponentLevel : .entropy }
        switch encoding {
        case .raw: return []
        case .byteGroup: return valueLevels
        // Positions and masks repeat a handful of bit patterns: the strong level pays.
        case .nm: return valueLevels + [exponentLevel]
        case .bitmask: return [exponentLevel] + valueLevels
        }
    }

    /// Encodes `elements` elements of `width` bytes into `output`. Returns the index of the
    /// first group that breaks an N:M pattern as a failure.
    static func encode(
        _ source: UnsafeRawBufferPointer, elements: Int, width: Int, encoding: PareEncoding, levels: [Zstd.Setting],
        output: ScratchBuffer
    ) -> Result<Encoded, NMViolation> {
        ChunkScratch.pool.withContext { scratch in
            switch encoding {
            case .raw:
                let copy = output.reserve(source.count)
                if source.count > 0 { copy.copyMemory(from: source.baseAddress!, byteCount: source.count) }
                return .success(Encoded(bytes: UnsafeRawBufferPointer(start: copy, count: source.count), streams: []))
            case .byteGroup:
                return .success(compressGrouped(source.baseAddress!, count: elements, width: width, levels: levels,
                                                scratch: scratch, output: output))
            case .nm(let pattern):
                let valueCount = pattern.valueCount(elements: elements)
                let values = scratch.values.reserve(valueCount * width)
                let indexBytes = pattern.indexBytes(elements: elements)
                let indices = scratch.side.reserve(indexBytes).assumingMemoryBound(to: UInt8.self)
                let bad: Int?
                switch width {
                case 2:
                    bad = NMPacking.pack(source.baseAddress!.assumingMemoryBound(to: UInt16.self), count: elements, pattern: pattern,
                                         values: values.assumingMemoryBound(to: UInt16.self), indices: indices)
                default:
                    bad = NMPacking.pack(source.baseAddress!.assumingMemoryBound(to: UInt32.self), count: elements, pattern: pattern,
                                         values: values.assumingMemoryBound(to: UInt32.self), indices: indices)
                }
                if let bad { return .failure(NMViolation(group: bad)) }
                let trailing = (UnsafeRawBufferPointer(start: indices, count: indexBytes), levels[width])
                return .success(compressGrouped(values, count: valueCount, width: width, levels: Array(levels[..<width]),
                                                trailing: [trailing], scratch: scratch, output: output))
            case .bitmask:
                let maskBytes = BitmaskPacking.maskBytes(count: elements)
                let mask = scratch.side.reserve(maskBytes).assumingMemoryBound(to: UInt8.self)
                let values = scratch.values.reserve(elements * width)
                let nonZero: Int
                switch width {
                case 2:
                    nonZero = BitmaskPacking.pack(source.baseAddress!.assumingMemoryBound(to: UInt16.self), count: elements,
                                                  mask: mask, values: values.assumingMemoryBound(to: UInt16.self))
                default:
                    nonZero = BitmaskPacking.pack(source.baseAddress!.assumingMemoryBound(to: UInt32.self), count: elements,
                                                  mask: mask, values: values.assumingMemoryBound(to: UInt32.self))
                }
                let leading = (UnsafeRawBufferPointer(start: mask, count: maskBytes), levels[0])
                return .success(compressGrouped(values, count: nonZero, width: width, levels: Array(levels[1...]),
                                                leading: [leading], scratch: scratch, output: output))
            }
        }
    }

    struct NMViolation: Error {
        var group: Int
    }

    /// Byte-groups `count` elements and compresses each stream into `output`, with extra
    /// frames before and after.
    private static func compressGrouped(
        _ source: UnsafeRawPointer, count: Int, width: Int, levels: [Zstd.Setting],
        leading: [(UnsafeRawBufferPointer, Zstd.Setting)] = [], trailing: [(UnsafeRawBufferPointer, Zstd.Setting)] = [],
        scratch: ChunkScratch, output: ScratchBuffer
    ) -> Encoded {
        let planes = scratch.planes.reserve(count * width)
        let streams = (0..<width).map { planes + $0 * count }
        ByteGrouping.split(source, count: count, width: width, into: streams)
        var frames = leading
        frames += streams.enumerated().map { (UnsafeRawBufferPointer(start: $1, count: count), levels[$0]) }
        frames += trailing
        let capacity = frames.reduce(0) { $0 + Zstd.bound($1.0.count) }
        let out = output.reserve(capacity)
        var lengths: [Int] = []
        var offset = 0
        for (input, level) in frames {
            let written = Zstd.compress(input, setting: level, into: out + offset, capacity: capacity - offset)
            lengths.append(written)
            offset += written
        }
        return Encoded(bytes: UnsafeRawBufferPointer(start: out, count: offset), streams: lengths)
    }

    /// Decodes a chunk's stored bytes into `destination` (its decoded bytes). Returns why it
    /// failed, or `nil`.
    static func decode(
        _ stored: UnsafeRawBufferPointer, streams: [Int], elements: Int, width: Int, encoding: PareEncoding,
        into destination: UnsafeMutableRawPointer
    ) -> String? {
        ChunkScratch.pool.withContext { scratch in
            decode(stored, streams: streams, elements: elements, width: width, encoding: encoding, into: destination, scratch: scratch)
        }
    }

    private static func decode(
        _ stored: UnsafeRawBufferPointer, streams: [Int], elements: Int, width: Int, encoding: PareEncoding,
        into destination: UnsafeMutableRawPointer, scratch: ChunkScratch
    ) -> String? {
        switch encoding {
        case .raw:
            if stored.count > 0 { destination.copyMemory(from: stored.baseAddress!, byteCount: stored.count) }
            return nil
        case .byteGroup:
            return decompressGrouped(stored, streams: streams, firstFrame: 0, count: elements, width: width, scratch: scratch) { planes in
                ByteGrouping.interleave(planes, count: elements, width: width, into: destination)
                return nil
            }
        case .nm(let pattern):
            let valueCount = pattern.valueCount(elements: elements)
            let indexBytes = pattern.indexBytes(elements: elements)
            let indices = scratch.side.reserve(indexBytes).assumingMemoryBound(to: UInt8.self)
            let indexFrame = frame(stored, streams: streams, at: width)
            if let problem = Zstd.decompress(indexFrame, into: indices, expected: indexBytes) {
                return "frame \(width) (positions) \(problem)"
            }
            return decompressGrouped(stored, streams: streams, firstFrame: 0, count: valueCount, width: width, scratch: scratch) { planes in
                let values = scratch.values.reserve(valueCount * width)
                ByteGrouping.interleave(planes, count: valueCount, width: width, into: values)
                let bad: Int?
                switch width {
                case 2:
                    bad = NMPacking.unpack(values: values.assumingMemoryBound(to: UInt16.self), indices: indices, count: elements,
                                           pattern: pattern, into: destination.assumingMemoryBound(to: UInt16.self))
                default:
                    bad = NMPacking.unpack(values: values.assumingMemoryBound(to: UInt32.self), indices: indices, count: elements,
                                           pattern: pattern, into: destination.assumingMemoryBound(to: UInt32.self))
                }
                return bad.map { "group \($0) has positions that do not increase" }
            }
        case .bitmask:
            let maskBytes = BitmaskPacking.maskBytes(count: elements)
            let mask = scratch.side.reserve(maskBytes).assumingMemoryBound(to: UInt8.self)
            if let problem = Zstd.decompress(frame(stored, streams: streams, at: 0), into: mask, expected: maskBytes) {
                return "frame 0 (mask) \(problem)"
            }
            guard let nonZero = BitmaskPacking.setBits(mask: mask, count: elements) else {
                return "the mask has bits set past the chunk's last element"
            }
            return decompressGrouped(stored, streams: streams, firstFrame: 1, count: nonZero, width: width, scratch: scratch) { planes in
                let values = scratch.values.reserve(nonZero * width)
                ByteGrouping.interleave(planes, count: nonZero, width: width, into: values)
                switch width {
                case 2:
                    BitmaskPacking.unpack(mask: mask, values: values.assumingMemoryBound(to: UInt16.self), count: elements,
                                          into: destination.assumingMemoryBound(to: UInt16.self))
                default:
                    BitmaskPacking.unpack(mask: mask, values: values.assumingMemoryBound(to: UInt32.self), count: elements,
                                          into: destination.assumingMemoryBound(to: UInt32.self))
                }
                return nil
            }
        }
    }

    /// The stored bytes of frame `index`.
    private static func frame(_ stored: UnsafeRawBufferPointer, streams: [Int], at index: Int) -> UnsafeRawBufferPointer {
        let start = streams[..<index].reduce(0, +)
        return UnsafeRawBufferPointer(rebasing: stored[start..<(start + streams[index])])
    }

    /// Decompresses `width` consecutive frames of `count` bytes each, starting at frame
    /// `firstFrame`, and hands the planes to `body`.
    private static func decompressGrouped(
        _ stored: UnsafeRawBufferPointer, streams: [Int], firstFrame: Int, count: Int, width: Int,
        scratch: ChunkScratch, _ body: ([UnsafeRawPointer]) -> String?
    ) -> String? {
        let planes = scratch.planes.reserve(count * width)
        for k in 0..<width {
            let index = firstFrame + k
            if let problem = Zstd.decompress(frame(stored, streams: streams, at: index), into: planes + k * count, expected: count) {
                return "frame \(index) \(problem)"
            }
        }
        return body((0..<width).map { UnsafeRawPointer(planes + $0 * count) })
    }
}
