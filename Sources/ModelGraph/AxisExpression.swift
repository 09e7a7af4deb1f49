/// A size written in terms of axes: `hidden / heads`, `kv_heads*group*head_dim`, `4*hidden`.
///
/// The grammar: `expression := term (("*" | "/") term)*`, `term := axis | integer`, spaces
/// ignored, no parentheses, and `*` and `/` have the same precedence: the expression is
/// evaluated strictly left to right (`hidden / heads * 2` is `(hidden / heads) * 2`). Every
/// quotient must be exact. Axis names come from the vocabulary (`Axis`). Products of axes also
/// say how an index decomposes (`kv_heads*group*head_dim`: index = (k*group + g)*head_dim + d),
/// which is what lets a pass select heads inside a flattened dimension.
public struct AxisExpression: Sendable, Hashable, CustomStringConvertible {
    public enum Term: Sendable, Hashable {
        case axis(Axis)
        case number(Int)
    }

    public enum Operator: Sendable, Hashable {
        case multiply, divide
    }

    public let first: Term
    public let rest: [(Operator, Term)]
    public let text: String

    public static func == (lhs: AxisExpression, rhs: AxisExpression) -> Bool { lhs.text == rhs.text }
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }
    public var description: String { text }

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var text: String
        /// A name that looks like an axis but is not one of the vocabulary.
        public var unknownAxis: String? = nil
        public var description: String {
            if let unknownAxis {
                return "'\(text)' names '\(unknownAxis)', which is not an axis (known: \(Axis.all.map(\.rawValue).joined(separator: ", ")))"
            }
            return "'\(text)' is not an axis expression (axes and numbers joined by * and /)"
        }
    }

    public init(_ text: String) throws(ParseError) {
        self.text = text
        var terms: [Term] = []
        var operators: [Operator] = []
        var token = ""
        func flush() throws(ParseError) {
            guard !token.isEmpty else { throw ParseError(text: text) }
            if token.allSatisfy(\.isNumber), let n = Int(token) {
                terms.append(.number(n))
            } else if token.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), token.first!.isLetter {
                guard let axis = Axis(rawValue: token) else { throw ParseError(text: text, unknownAxis: token) }
                terms.append(.axis(axis))
            } else {
                throw ParseError(text: text)
            }
            token = ""
        }
        for c in text where c != " " {
            switch c {
            case "*":
                try flush()
                operators.append(.multiply)
            case "/":
                try flush()
                operators.append(.divide)
            default: token.append(c)
            }
        }
        try flush()
        first = terms[0]
        rest = Array(zip(operators, terms.dropFirst()))
    }

    /// Every axis the expression names.
    public var axes: [Axis] {
        ([first] + rest.map(\.1)).compactMap { if case .axis(let a) = $0 { return a } else { return nil } }
    }

    /// The axes of a pure product of axes (`kv_heads*group*head_dim`), outermost first;
    /// `nil` for anything with numbers or quotients.
    public var productAxes: [Axis]? {
        guard rest.allSatisfy({ $0.0 == .multiply }) else { return nil }
        let all = [first] + rest.map(\.1)
        var names: [Axis] = []
        for term in all {
            guard case .axis(let name) = term else { return nil }
            names.append(name)
        }
        return names
    }

    public enum EvaluationError: Error, Sendable, Equatable {
        case unknownAxis(Axis)
        case inexactDivision(dividend: Int, divisor: Int)
        case overflow
    }

    /// The value given axis sizes.
    public func evaluate(_ size: (Axis) -> Int?) throws(EvaluationError) -> Int {
        func value(_ term: Term) throws(EvaluationError) -> Int {
            switch term {
            case .number(let n): return n
            case .axis(let name):
                guard let v = size(name) else { throw .unknownAxis(name) }
                return v
            }
        }
        var result = try value(first)
        for (op, term) in rest {
            let v = try value(term)
            switch op {
            case .multiply:
                let (product, overflow) = result.multipliedReportingOverflow(by: v)
                if overflow { throw .overflow }
                result = product
            case .divide:
                guard v != 0, result % v == 0 else { throw .inexactDivision(dividend: result, divisor: v) }
                result /= v
            }
        }
        return result
    }
}

extension AxisExpression {
    /// The size `unknown` must have for the expression to equal `value`, the other axes
    /// keeping their sizes; `nil` when the axis does not appear exactly once or no whole
    /// size works. Turns `group = heads / kv_heads` around when a trim sets the group.
    public func solve(for unknown: Axis, toEqual value: Int, _ size: (Axis) -> Int?) -> Int? {
        let terms = [(Operator.multiply, first)] + rest
        guard terms.filter({ $0.1 == .axis(unknown) }).count == 1 else { return nil }
        var product = 1, divisor = 1
        var unknownDivides = false
        for (op, term) in terms {
            let v: Int
            switch term {
            case .axis(let axis) where axis == unknown:
                unknownDivides = op == .divide
                continue
            case .axis(let axis):
                guard let s = size(axis) else { return nil }
                v = s
            case .number(let n): v = n
            }
            if op == .multiply { product *= v } else { divisor *= v }
        }
        // value = product * u / divisor, or value = product / (divisor * u).
        let candidate: Int
        if unknownDivides {
            guard value != 0, divisor != 0, product % (divisor * value) == 0 else { return nil }
            candidate = product / (divisor * value)
        } else {
            guard product != 0, (value * divisor) % product == 0 else { return nil }
            candidate = value * divisor / product
        }
        guard candidate > 0, (try? evaluate({ $0 == unknown ? candidate : size($0) })) == value else { return nil }
        return candidate
    }
}
