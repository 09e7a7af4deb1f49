import CKernels

/// CRC-32C (Castagnoli), the checksum of every chunk, tensor and index of a `.pare` file.
public enum CRC32C {
    /// The CRC of `bytes`, continuing `crc` (0 to start): crc(a ++ b) = checksum(b, continuing: checksum(a)).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return pare_crc32c(crc, base, bytes.count)
    }

    /// The CRC of A ++ B from the CRCs of A and B and B's length.
    public static func combine(_ first: UInt32, _ second: UInt32, secondLength: Int) -> UInt32 {
        pare_crc32c_combine(first, second, secondLength)
    }

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }
}
