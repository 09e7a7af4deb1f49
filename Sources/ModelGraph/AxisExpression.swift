/// A size written in terms of axes: `hidden / heads`, `kv_heads*group*head_dim`, `4*hidden`.
///
/// Integer products and exact quotients, evaluated left to right. Products of axes also
/// say how an index decomposes (`kv_heads*group*head_dim`: index = (k*group + g)*head_dim + d),
/// which is what lets a pass select heads inside a flattened dimension.
public struct AxisExpression: Sendable, Hashable, CustomStringConvertible {
    public enum Term: Sendable, Hashable {
        case axis(String)
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
        public var description: String { "'\(text)' is not an axis expression (axes and numbers joined by * and /)" }
    }

    public init(_ text: String) throws(ParseError) {
        self.text = text
        var terms: [Term] = []
        var operators: [Operator] = []
        var token = ""
        func flush() throws(ParseError) {
            guard !token.isEmpty else { throw ParseError(text: text) }
            if let n = Int(token) {
                terms.append(.number(n))
            } else if token.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), token.first!.isLetter {
                terms.append(.axis(token))
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
    public var axes: [String] {
        ([first] + rest.map(\.1)).compactMap { if case .axis(let a) = $0 { return a } else { return nil } }
    }

    /// The axes of a pure product of axes (`kv_heads*group*head_dim`), outermost first;
    /// `nil` for anything with numbers or quotients.
    public var productAxes: [String]? {
        guard rest.allSatisfy({ $0.0 == .multiply }) else { return nil }
        let all = [first] + rest.map(\.1)
        var names: [String] = []
        for term in all {
            guard case .axis(let name) = term else { return nil }
            names.append(name)
        }
        return names
    }

    public enum EvaluationError: Error, Sendable, Equatable {
        case unknownAxis(String)
        case inexactDivision(dividend: Int, divisor: Int)
        case overflow
    }

    /// The value given axis sizes.
    public func evaluate(_ size: (String) -> Int?) throws(EvaluationError) -> Int {
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
