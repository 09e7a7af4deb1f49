/// Counts for people: `1.24B`, `356M`, `12.3K`, and `1,234,567`.
public enum Count {
    public static func short(_ n: UInt64) -> String {
        let value = Double(n)
        for (unit, factor) in [("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)] where value >= factor {
            return trimmed(value / factor) + unit
        }
        return "\(n)"
    }

    private static func trimmed(_ value: Double) -> String {
        let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
        var factor = 1.0
        for _ in 0..<digits { factor *= 10 }
        let rounded = (value * factor).rounded() / factor
        var text = String(rounded)
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }

    public static func grouped(_ n: UInt64) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return out
    }
}
