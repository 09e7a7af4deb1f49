/// Byte sizes as users write them: `5GB`, `500MB`, `2MiB`, `123456`.
///
/// Decimal units are powers of 1000 and binary units powers of 1024, as in transformers'
/// `max_shard_size`.
public enum ByteSize {
    static let units: [(suffix: String, factor: Int)] = [
        ("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
        ("B", 1),
    ]

    /// Parses a size, or returns `nil` for anything else (including zero and overflow).
    public static func parse(_ text: String) -> Int? {
        let upper = text.uppercased().filter { $0 != " " }
        for (suffix, factor) in units where upper.hasSuffix(suffix) {
            let number = String(upper.dropLast(suffix.count))
            return scaled(number, by: factor)
        }
        return scaled(upper, by: 1)
    }

    private static func scaled(_ number: String, by factor: Int) -> Int? {
        if let whole = Int(number) {
            let (value, overflow) = whole.multipliedReportingOverflow(by: factor)
            return overflow || value <= 0 ? nil : value
        }
        guard let fraction = Double(number), fraction.isFinite, fraction > 0 else { return nil }
        let value = fraction * Double(factor)
        guard value >= 1, value < 9e18 else { return nil }
        return Int(value)
    }

    /// A size for people: `1.23 GB`, `512 B`.
    public static func describe<T: BinaryInteger>(_ bytes: T) -> String {
        let value = Double(bytes)
        for (unit, factor) in [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] where value >= factor {
            let scaled = value / factor
            let digits = scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2
            return format(scaled, digits) + " " + unit
        }
        return "\(bytes) B"
    }

    /// `value` with at most `digits` decimals.
    public static func format(_ value: Double, _ digits: Int) -> String {
        var factor = 1.0
        for _ in 0..<digits { factor *= 10 }
        let rounded = (value * factor).rounded() / factor
        var text = String(rounded)
        if let dot = text.firstIndex(of: ".") {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if digits == 0 {
                text = String(text[..<dot])
            } else if decimals < digits {
                text += String(repeating: "0", count: digits - decimals)
            }
        }
        return text
    }
}
