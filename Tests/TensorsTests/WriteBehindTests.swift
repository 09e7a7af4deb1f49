#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport

@testable import Tensors

/// Files written behind (direct I/O from a background queue) hold exactly the bytes given,
/// whatever the sizes of the pieces and of the file, on disk and on tmpfs (where direct
/// I/O may be refused and the same writes go through the page cache).
@Suite struct WriteBehindTests {
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    static let buffer = WriteBehind.bufferBytes

    @Test(arguments: [0, 1, 4095, 4096, 4097, buffer - 1, buffer, buffer + 1, 4 * buffer + 12345])
    func writesExactlyTheBytes(size: Int) throws {
        for root in ["/tmp", "/dev/shm"] where FileSystem.kind(of: root) == .directory {
            let directory = TemporaryDirectory(under: root)
            let path = directory.file("out.bin")
            let expected = Self.bytes(size, seed: UInt64(size) + 1)
            let file = try OutputFile(creating: path, writeBehind: true)
            // Pieces of uneven sizes, some larger than a buffer.
            var offset = 0, step = 1
            while offset < size {
                let count = min(size - offset, step)
                try expected.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + count)])) }
                offset += count
                step = step * 7 % (Self.buffer + 4099) + 1
            }
            #expect(file.offset == size)
            try file.sync()
            try file.close()
            #expect(try readBytes(path) == expected, "\(size) bytes under \(root)")
        }
    }

    /// Bytes produced in place, mixed with copied ones, in sizes that make the writer move
    /// a buffer's last partial block to the next buffer.
    @Test(arguments: ["/tmp", "/dev/shm"])
    func producesInPlace(root: String) throws {
        guard FileSystem.kind(of: root) == .directory else { return }
        let directory = TemporaryDirectory(under: root)
        let sizes = [5, OutputFile.maximumSpace, 4097, OutputFile.maximumSpace - 3, 1, 3 * 4096 + 17, OutputFile.maximumSpace]
        let expected = Self.bytes(sizes.reduce(0, +) + 1000, seed: 11)
        for writeBehind in [true, false] {
            let path = directory.file("out-\(writeBehind).bin")
            let file = try OutputFile(creating: path, writeBehind: writeBehind)
            var offset = 0
            for (i, size) in sizes.enumerated() {
                if i % 3 == 2 {
                    try expected.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + size)])) }
                } else {
                    try file.withSpace(size) { space in
                        expected.withUnsafeBytes { space.copyMemory(from: $0.baseAddress! + offset, byteCount: size) }
                    }
                }
                offset += size
            }
            try expected.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            #expect(file.offset == expected.count)
            try file.close()
            #expect(try readBytes(path) == expected, "writeBehind \(writeBehind) under \(root)")
        }
    }

    @Test func copiesFromAMappingBetweenWrites() throws {
        let directory = TemporaryDirectory()
        let source = Self.bytes(3 * Self.buffer + 777, seed: 9)
        try writeBytes(source, to: directory.file("in.bin"))
        let mapping = try MappedFile(path: directory.file("in.bin"))
        let file = try OutputFile(creating: directory.file("out.bin"), writeBehind: true)
        try file.write([1, 2, 3])
        try file.copy(from: mapping, at: 5, count: source.count - 5)
        try file.write([4])
        try file.close()
        #expect(try readBytes(directory.file("out.bin")) == [1, 2, 3] + source[5...] + [4])
    }

    @Test func closingWithoutSyncStillWritesTheTail() throws {
        let directory = TemporaryDirectory()
        let expected = Self.bytes(Self.buffer + 10, seed: 3)
        do {
            let file = try OutputFile(creating: directory.file("out.bin"), writeBehind: true)
            try file.write(expected)
            try file.close()
        }
        #expect(try readBytes(directory.file("out.bin")) == expected)
    }

    /// A device that refuses every write (/dev/full: ENOSPC): the error of a background
    /// write comes out of a later `write` or of `finish`, names the file, stays, and
    /// nothing traps or hangs, whether the writer is finished or dropped.
    @Test func aFailedWriteIsThrownLaterAndStays() throws {
        for finishing in [true, false] {
            let descriptor = open("/dev/full", O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return }
            defer { close(descriptor) }
            var behind: WriteBehind? = WriteBehind(descriptor: descriptor, path: "/dev/full")
            let piece = PageBuffer(bytes: WriteBehind.bufferBytes + 4096)
            var thrown: FileError?
            do throws(FileError) {
                // More than every buffer holds, so a write must wait for a failed one.
                for _ in 0..<(WriteBehind.bufferCount + 2) {
                    try behind!.write(UnsafeRawBufferPointer(piece.bytes))
                }
                if finishing { try behind!.finish() }
            } catch {
                thrown = error
            }
            if finishing {
                #expect(thrown == FileError(.write, path: "/dev/full", code: ENOSPC))
                #expect(throws: FileError.self) { try behind!.finish() }
            }
            behind = nil
        }
    }

    @Test func abandonedFileReleasesItsBuffers() throws {
        // Dropped mid-write (as after an error elsewhere): no trap, no hang.
        let directory = TemporaryDirectory()
        var file: OutputFile? = try OutputFile(creating: directory.file("out.bin"), writeBehind: true)
        try file!.write(Self.bytes(Self.buffer + 5, seed: 4))
        file = nil
        #expect(FileSystem.kind(of: directory.file("out.bin")) == .file)
    }
}
