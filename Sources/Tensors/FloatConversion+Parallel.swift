import Dispatch

#if canImport(Glibc)
import Glibc
#endif

extension FloatConversion {
    /// The number of cores to spread a conversion over.
    public static let activeCores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// `convert` split into contiguous slices, one per core, for large buffers.
    ///
    /// Slices are independent (each element converts on its own), so the result is
    /// byte-identical to the serial conversion.
    public static func convertInParallel(
        count: Int, from: DType, _ source: UnsafeRawPointer,
        to: DType, _ destination: UnsafeMutableRawPointer, cores: Int = activeCores
    ) {
        let parts = count >= 1 << 16 ? cores : 1
        guard parts > 1 else {
            convert(count: count, from: from, source, to: to, destination)
            return
        }
        let inBytes = from.bitWidth / 8, outBytes = to.bitWidth / 8
        let slice = (count + parts - 1) / parts
        // The pointers outlive the call, which waits for every slice.
        nonisolated(unsafe) let source = source
        nonisolated(unsafe) let destination = destination
        WorkerPool.shared.perform(parts) { part in
            let start = part * slice
            let n = min(slice, count - start)
            guard n > 0 else { return }
            convert(count: n, from: from, source + start * inBytes, to: to, destination + start * outBytes)
        }
    }
}
