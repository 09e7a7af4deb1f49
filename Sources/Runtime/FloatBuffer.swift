/// A reusable, 64-byte aligned buffer of f32 values, released in `deinit`.
///
/// The executor keeps one per role (a layer's q_proj weight, the attention workspace) and
/// reuses it from layer to layer: `reserve` grows it only when a larger size is asked for,
/// so no memory is allocated per token or per layer once the first layer has run.
public final class FloatBuffer: @unchecked Sendable {
    public private(set) var base: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int
    /// The element count of the current contents.
    public private(set) var count = 0

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 16)
        base = Self.allocate(self.capacity)
    }

    deinit { base.deallocate() }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: n)
    }

    /// Makes room for `n` values (the old contents are not kept when it grows) and sets `count`.
    @discardableResult
    public func reserve(_ n: Int) -> UnsafeMutablePointer<Float> {
        if n > capacity {
            base.deallocate()
            capacity = n
            base = Self.allocate(n)
        }
        count = n
        return base
    }

    /// Gives the memory back (the buffer grows again when next reserved).
    public func release() {
        base.deallocate()
        capacity = 16
        base = Self.allocate(capacity)
        count = 0
    }

    /// Sets `count` values to zero.
    public func zero(_ n: Int) {
        reserve(n).initialize(repeating: 0, count: n)
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }

    /// Bytes held (what peak memory counts).
    public var bytes: Int { capacity * MemoryLayout<Float>.stride }
}
