/// Element counts of tensor shapes, with the overflow checks a hostile header needs.
public enum Shape {
    /// The product of `dimensions`, or `nil` when it overflows 64 bits.
    ///
    /// An empty shape is a scalar (one element); a zero dimension makes an empty tensor.
    public static func elementCount(_ dimensions: [UInt64]) -> UInt64? {
        var count: UInt64 = 1
        for d in dimensions {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// Describes a shape the way torch prints it: `[32, 64]`.
    public static func describe(_ dimensions: [UInt64]) -> String {
        "[" + dimensions.map(String.init).joined(separator: ", ") + "]"
    }
}
