// libFuzzer entry point for the .pare reader (built by tools/fuzz/run.sh into one module
// with OrderedJSON, Tensors and PareFormat).
//
// An input is a data area and an index: its first 4 bytes give the index's length n
// (little-endian, taken modulo the rest), the last n bytes are the index JSON, and what
// lies between is the data after the 16-byte header. The harness writes a file around
// them with a correct footer and index CRC, so mutations reach the index parser and the
// decoders instead of dying at the index checksum. Any input must be read (and every
// tensor decode to its declared size) or be rejected with a typed error; a crash, a hang
// or an address-sanitizer report is a bug.

#if canImport(Glibc)
import Glibc
#endif

private let path = "/tmp/pare-fuzz-\(getpid()).pare"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPare(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 4 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let rest = size - 4
    let declared = Int(input[0]) | Int(input[1]) << 8 | Int(input[2]) << 16 | Int(input[3]) << 24
    let indexLength = rest == 0 ? 0 : declared % (rest + 1)
    let area = Array(input[4..<(size - indexLength)])
    let index = Array(input[(size - indexLength)...])
    var file = PareFile.magic + [1, 0, 0, 0, 0, 0, 0, 0] + area
    let indexOffset = file.count
    file += index
    file.appendLittleEndian(UInt64(indexOffset))
    file.appendLittleEndian(UInt64(index.count))
    file.appendLittleEndian(CRC32C.checksum(index))
    file.appendLittleEndian(UInt32(0))
    file += PareFile.magic
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0)
    _ = file.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    do {
        let pare = try PareFile.open(path: path)
        try pare.verifyPadding()
        for tensor in pare.tensors {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(tensor.size), alignment: 64)
            defer { buffer.deallocate() }
            try pare.decode(tensor, into: buffer)
        }
    } catch {
        precondition(!error.description.isEmpty && !error.rule.isEmpty)
    }
    return 0
}
