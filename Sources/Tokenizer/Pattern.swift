/// A regular expression in the dialect `tokenizers` hands to Oniguruma, compiled for a
/// backtracking matcher over Unicode scalars. It runs the split patterns of the families
/// pare ships: literals, classes with Unicode general categories (`\p{L}`, `[^\s\p{L}\p{N}]`),
/// alternation, groups, `(?i:…)`, greedy and lazy quantifiers with counts, and lookahead.
/// Whatever else the syntax allows (lookbehind, backreferences, possessive or atomic
/// groups, scripts) is refused by name, because matching it differently would change ids.
///
/// Matching is leftmost-first, as Oniguruma's: alternatives are tried in order and the
/// first that completes wins.
struct Pattern: Sendable {
    let source: String
    let program: [Instruction]
    let sets: [ScalarSet]

    enum Instruction: Sendable {
        case scalar(UInt32)
        /// One scalar compared after case folding.
        case folded(UInt32)
        case set(Int)
        /// `.`: any scalar but a line feed.
        case any
        /// Try the first target, and the second if what follows fails.
        case split(Int, Int)
        case jump(Int)
        /// Run the body (from the next instruction to its `.succeed`) at this position
        /// without consuming; continue at `next` when it matched (or did not, when negated).
        case lookahead(negated: Bool, next: Int)
        case succeed
        case textStart
        case textEnd
        case lineStart
        case lineEnd
        case match
    }

    /// Parses and compiles `source`; `ignoreCase` starts the pattern in `(?i)` mode.
    init(_ source: String, ignoreCase: Bool = false) throws(PatternError) {
        var parser = PatternParser(Array(source.unicodeScalars))
        let tree = try parser.parseAll(ignoreCase: ignoreCase)
        var compiler = PatternCompiler()
        try compiler.emit(tree)
        compiler.program.append(.match)
        self.source = source
        program = compiler.program
        sets = compiler.sets
    }

    /// A pattern that matches `literal` exactly (the `String` form of a Split or Replace).
    init(literal: String) {
        source = literal
        program = literal.unicodeScalars.map { .scalar($0.value) } + [.match]
        sets = []
    }

    var matchesNothingButEmpty: Bool { program.count == 1 }
}

/// What the pattern parser refuses, as a phrase that follows the pattern.
struct PatternError: Error, Sendable, Equatable {
    let problem: String
}

/// A set of scalars: explicit ranges plus Unicode classes, each possibly negated.
struct ScalarSet: Sendable {
    var ranges: [ClosedRange<UInt32>] = []
    /// Classes the scalar must be in (any of them).
    var classes: UInt32 = 0
    /// Classes whose complement the set includes (`\S`, `\P{L}` inside brackets).
    var complementedClasses: [UInt32] = []
    var negated = false
    var ignoreCase = false

    @inline(__always)
    func contains(_ value: UInt32, mask: UInt32) -> Bool {
        containsIgnoringNegation(value, mask: mask) != negated
    }

    @inline(__always)
    private func containsIgnoringNegation(_ value: UInt32, mask: UInt32) -> Bool {
        if mask & classes != 0 { return true }
        for c in complementedClasses where mask & c == 0 { return true }
        for r in ranges where r.contains(value) { return true }
        if ignoreCase && !ranges.isEmpty {
            let folded = ScalarClass.fold(value)
            for r in ranges {
                if r.contains(folded) { return true }
                // A range of capitals holds the capital of a folded scalar.
                if folded < 128, folded >= 97, folded <= 122, r.contains(folded - 32) { return true }
            }
        }
        return false
    }
}

/// The pattern's syntax tree.
indirect enum PatternNode {
    case empty
    case scalar(UInt32, ignoreCase: Bool)
    case set(ScalarSet)
    case any
    case sequence([PatternNode])
    case alternation([PatternNode])
    case repeated(PatternNode, min: Int, max: Int?, greedy: Bool)
    case lookahead(PatternNode, negated: Bool)
    case textStart, textEnd, lineStart, lineEnd

    /// Whether the node can match without consuming a scalar (such a node cannot be
    /// repeated without bound: the matcher would loop).
    var canBeEmpty: Bool {
        switch self {
        case .empty, .lookahead, .textStart, .textEnd, .lineStart, .lineEnd: return true
        case .scalar, .set, .any: return false
        case .sequence(let items): return items.allSatisfy(\.canBeEmpty)
        case .alternation(let items): return items.contains(where: \.canBeEmpty)
        case let .repeated(node, min, _, _): return min == 0 || node.canBeEmpty
        }
    }
}

struct PatternParser {
    let scalars: [Unicode.Scalar]
    var i = 0

    init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

    mutating func parseAll(ignoreCase: Bool) throws(PatternError) -> PatternNode {
        var flag = ignoreCase
        let node = try parseAlternation(ignoreCase: &flag)
        if i < scalars.count { throw PatternError(problem: "has an unmatched ')' at position \(i)") }
        return node
    }

    private var peek: Unicode.Scalar? { i < scalars.count ? scalars[i] : nil }

    private mutating func parseAlternation(ignoreCase: inout Bool) throws(PatternError) -> PatternNode {
        var branches = [try parseSequence(ignoreCase: &ignoreCase)]
        while peek == "|" {
            i += 1
            branches.append(try parseSequence(ignoreCase: &ignoreCase))
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    private mutating func parseSequence(ignoreCase: inout Bool) throws(PatternError) -> PatternNode {
        var items: [PatternNode] = []
        while let c = peek, c != "|", c != ")" {
            if c == "(", i + 2 < scalars.count, scalars[i + 1] == "?", scalars[i + 2] == "i" || scalars[i + 2] == "-",
               let flagged = try parseInlineFlag() {
                // `(?i)` turns case folding on for the rest of the enclosing group.
                ignoreCase = flagged
                continue
            }
            var atom = try parseAtom(ignoreCase: ignoreCase)
            atom = try parseQuantifiers(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : (items.isEmpty ? .empty : .sequence(items))
    }

    /// `(?i)` or `(?-i)` standing alone; nil when the group goes on (`(?i:…)`).
    private mutating func parseInlineFlag() throws(PatternError) -> Bool? {
        let negate = scalars[i + 2] == "-"
        let letter = i + (negate ? 3 : 2)
        guard letter < scalars.count else { throw PatternError(problem: "ends inside a group") }
        guard scalars[letter] == "i" else {
            throw PatternError(problem: "uses the option '\(scalars[letter])' at position \(letter), which pare does not implement")
        }
        guard letter + 1 < scalars.count else { throw PatternError(problem: "ends inside a group") }
        if scalars[letter + 1] == ")" {
            i = letter + 2
            return !negate
        }
        return nil
    }

    private mutating func parseQuantifiers(_ atom: PatternNode) throws(PatternError) -> PatternNode {
        var node = atom
        while let c = peek {
            var minimum = 0, maximum: Int? = nil
            let start = i
            switch c {
            case "*": i += 1
            case "+": minimum = 1; i += 1
            case "?": maximum = 1; i += 1
            case "{":
                guard let (lo, hi) = parseInterval() else { return node }
                minimum = lo; maximum = hi
            default: return node
            }
            var greedy = true
            if peek == "?" { greedy = false; i += 1 } else if peek == "+" {
                throw PatternError(problem: "has a possessive quantifier at position \(start), which pare does not implement")
            }
            if case .repeated = node, c != "{" {
                // Oniguruma reads `a**` and the like as nested repeats; refuse the oddity.
                throw PatternError(problem: "repeats a quantifier at position \(start)")
            }
            if maximum == nil, atom.canBeEmpty {
                throw PatternError(problem: "repeats without bound something that can match nothing (position \(start))")
            }
            if let maximum, maximum < minimum {
                throw PatternError(problem: "has an interval whose maximum is below its minimum at position \(start)")
            }
            node = .repeated(node, min: minimum, max: maximum, greedy: greedy)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{n,m}` or `{,m}`; nil (and nothing consumed) when the brace is literal.
    private mutating func parseInterval() -> (Int, Int?)? {
        var j = i + 1
        func number() -> Int? {
            var value: Int?
            while j < scalars.count, scalars[j].value >= 48, scalars[j].value <= 57 {
                value = (value ?? 0) * 10 + Int(scalars[j].value - 48)
                if value! > 100_000 { return nil }
                j += 1
            }
            return value
        }
        let lo = number()
        if j < scalars.count, scalars[j] == "," {
            j += 1
            let hi = number()
            guard lo != nil || hi != nil, j < scalars.count, scalars[j] == "}" else { return nil }
            i = j + 1
            return (lo ?? 0, hi)
        }
        guard let lo, j < scalars.count, scalars[j] == "}" else { return nil }
        i = j + 1
        return (lo, lo)
    }

    private mutating func parseAtom(ignoreCase: Bool) throws(PatternError) -> PatternNode {
        let c = scalars[i]
        switch c {
        case "(":
            return try parseGroup(ignoreCase: ignoreCase)
        case "[":
            i += 1
            var set = try parseClass()
            set.ignoreCase = ignoreCase
            return .set(set)
        case ".":
            i += 1
            return .any
        case "^":
            i += 1
            return .lineStart
        case "$":
            i += 1
            return .lineEnd
        case "\\":
            i += 1
            return try parseEscape(ignoreCase: ignoreCase)
        case "*", "+", "?":
            throw PatternError(problem: "has a quantifier with nothing to repeat at position \(i)")
        default:
            i += 1
            return .scalar(c.value, ignoreCase: ignoreCase)
        }
    }

    private mutating func parseGroup(ignoreCase: Bool) throws(PatternError) -> PatternNode {
        let open = i
        i += 1
        var flag = ignoreCase
        var lookahead: Bool?  // negated?
        if peek == "?" {
            i += 1
            guard let kind = peek else { throw PatternError(problem: "ends inside a group") }
            switch kind {
            case ":": i += 1
            case "=": i += 1; lookahead = false
            case "!": i += 1; lookahead = true
            case "i", "-":
                let negate = kind == "-"
                i += negate ? 2 : 1
                guard i - 1 < scalars.count, scalars[i - 1] == "i" else {
                    throw PatternError(problem: "uses an option group at position \(open) that pare does not implement")
                }
                guard peek == ":" else { throw PatternError(problem: "uses an option group at position \(open) that pare does not implement") }
                i += 1
                flag = !negate
            case "<":
                if i + 1 < scalars.count, scalars[i + 1] == "=" || scalars[i + 1] == "!" {
                    throw PatternError(problem: "has a lookbehind at position \(open), which pare does not implement")
                }
                throw PatternError(problem: "has a named group at position \(open), which pare does not implement")
            case ">":
                throw PatternError(problem: "has an atomic group at position \(open), which pare does not implement")
            default:
                throw PatternError(problem: "has the group '(?\(kind)' at position \(open), which pare does not implement")
            }
        }
        let body = try parseAlternation(ignoreCase: &flag)
        guard peek == ")" else { throw PatternError(problem: "has a '(' at position \(open) that is never closed") }
        i += 1
        if let negated = lookahead { return .lookahead(body, negated: negated) }
        return body
    }

    /// A backslash escape outside brackets.
    private mutating func parseEscape(ignoreCase: Bool) throws(PatternError) -> PatternNode {
        guard let c = peek else { throw PatternError(problem: "ends with a lone backslash") }
        switch c {
        case "A": i += 1; return .textStart
        case "z": i += 1; return .textEnd
        case "b", "B", "G", "Z", "K", "R", "X", "k", "g", "y", "Y", "O", "N":
            throw PatternError(problem: "uses \\\(c) at position \(i - 1), which pare does not implement")
        default:
            if c.properties.numericType == .decimal, c != "0" {
                throw PatternError(problem: "has a backreference \\\(c) at position \(i - 1), which pare does not implement")
            }
            if let set = try parseClassEscape() {
                var s = set
                s.ignoreCase = ignoreCase
                return .set(s)
            }
            return .scalar(try parseScalarEscape(), ignoreCase: ignoreCase)
        }
    }

    /// `\s \S \d \D \w \W \h \H \p{…} \P{…}` as a set; nil for other escapes (nothing consumed).
    private mutating func parseClassEscape() throws(PatternError) -> ScalarSet? {
        guard let c = peek else { return nil }
        var set = ScalarSet()
        switch c {
        case "s": set.classes = ScalarClass.whitespace
        case "S": set.classes = ScalarClass.whitespace; set.negated = true
        case "d": set.classes = ScalarClass.decimal
        case "D": set.classes = ScalarClass.decimal; set.negated = true
        case "w": set.classes = ScalarClass.word
        case "W": set.classes = ScalarClass.word; set.negated = true
        case "h": set.ranges = [48...57, 65...70, 97...102]
        case "H": set.ranges = [48...57, 65...70, 97...102]; set.negated = true
        case "p", "P":
            let at = i - 1
            i += 1
            guard peek == "{" else { throw PatternError(problem: "has \\\(c) without a {property} at position \(at)") }
            i += 1
            var name = ""
            while let n = peek, n != "}" { name.unicodeScalars.append(n); i += 1 }
            guard peek == "}" else { throw PatternError(problem: "has an unclosed \\\(c){ at position \(at)") }
            var negated = c == "P"
            if name.hasPrefix("^") { negated.toggle(); name.removeFirst() }
            guard let mask = Self.property(name) else {
                throw PatternError(problem: "uses the Unicode property '\(name)' at position \(at), which pare does not implement (general categories only)")
            }
            set.classes = mask
            set.negated = negated
        default: return nil
        }
        i += 1
        return set
    }

    /// The general category (or group of them) a `\p{…}` name stands for.
    static func property(_ raw: String) -> UInt32? {
        let name = raw.lowercased().filter { $0 != "_" && $0 != " " && $0 != "-" }
        let groups: [String: UInt32] = [
            "l": ScalarClass.letter, "letter": ScalarClass.letter,
            "m": ScalarClass.mark, "mark": ScalarClass.mark, "combiningmark": ScalarClass.mark,
            "n": ScalarClass.number, "number": ScalarClass.number,
            "p": ScalarClass.punctuation, "punctuation": ScalarClass.punctuation,
            "s": ScalarClass.symbol, "symbol": ScalarClass.symbol,
            "z": ScalarClass.separator, "separator": ScalarClass.separator,
            "c": ScalarClass.other, "other": ScalarClass.other,
            "lc": ScalarClass.bits(.uppercaseLetter, .lowercaseLetter, .titlecaseLetter),
            "casedletter": ScalarClass.bits(.uppercaseLetter, .lowercaseLetter, .titlecaseLetter),
        ]
        if let mask = groups[name] { return mask }
        let categories: [(String, String, Unicode.GeneralCategory)] = [
            ("lu", "uppercaseletter", .uppercaseLetter), ("ll", "lowercaseletter", .lowercaseLetter),
            ("lt", "titlecaseletter", .titlecaseLetter), ("lm", "modifierletter", .modifierLetter),
            ("lo", "otherletter", .otherLetter), ("mn", "nonspacingmark", .nonspacingMark),
            ("mc", "spacingmark", .spacingMark), ("me", "enclosingmark", .enclosingMark),
            ("nd", "decimalnumber", .decimalNumber), ("nl", "letternumber", .letterNumber),
            ("no", "othernumber", .otherNumber), ("pc", "connectorpunctuation", .connectorPunctuation),
            ("pd", "dashpunctuation", .dashPunctuation), ("ps", "openpunctuation", .openPunctuation),
            ("pe", "closepunctuation", .closePunctuation), ("pi", "initialpunctuation", .initialPunctuation),
            ("pf", "finalpunctuation", .finalPunctuation), ("po", "otherpunctuation", .otherPunctuation),
            ("sm", "mathsymbol", .mathSymbol), ("sc", "currencysymbol", .currencySymbol),
            ("sk", "modifiersymbol", .modifierSymbol), ("so", "othersymbol", .otherSymbol),
            ("zs", "spaceseparator", .spaceSeparator), ("zl", "lineseparator", .lineSeparator),
            ("zp", "paragraphseparator", .paragraphSeparator), ("cc", "control", .control),
            ("cf", "format", .format), ("cs", "surrogate", .surrogate), ("co", "privateuse", .privateUse),
            ("cn", "unassigned", .unassigned),
        ]
        for (short, long, category) in categories where name == short || name == long {
            return ScalarClass.bits(category)
        }
        return nil
    }

    /// A single-scalar escape: `\n`, `\x41`, `\x{1F600}`, `\u00e9`, `\0`, or an escaped symbol.
    private mutating func parseScalarEscape() throws(PatternError) -> UInt32 {
        let at = i - 1
        let c = scalars[i]
        i += 1
        switch c {
        case "n": return 0x0A
        case "r": return 0x0D
        case "t": return 0x09
        case "f": return 0x0C
        case "v": return 0x0B
        case "a": return 0x07
        case "e": return 0x1B
        case "0":
            var value: UInt32 = 0, digits = 0
            while digits < 2, let d = peek, d >= "0", d <= "7" { value = value * 8 + d.value - 48; i += 1; digits += 1 }
            return value
        case "x":
            if peek == "{" {
                i += 1
                let value = hex(maxDigits: 8)
                guard let value, peek == "}" else { throw PatternError(problem: "has a malformed \\x{…} at position \(at)") }
                i += 1
                return value
            }
            guard let value = hex(maxDigits: 2) else { throw PatternError(problem: "has a malformed \\x at position \(at)") }
            return value
        case "u":
            guard let value = hex(maxDigits: 4, exactly: true) else { throw PatternError(problem: "has a malformed \\u at position \(at)") }
            return value
        default:
            if c.properties.isAlphabetic || c.properties.numericType != nil {
                throw PatternError(problem: "uses the escape \\\(c) at position \(at), which pare does not implement")
            }
            return c.value
        }
    }

    private mutating func hex(maxDigits: Int, exactly: Bool = false) -> UInt32? {
        var value: UInt32 = 0, digits = 0
        while digits < maxDigits, let d = peek, let v = d.isASCII ? UInt32(String(d), radix: 16) : nil {
            value = value * 16 + v
            i += 1
            digits += 1
        }
        if digits == 0 || (exactly && digits != maxDigits) { return nil }
        return value
    }

    /// A bracket class, after its `[`.
    private mutating func parseClass() throws(PatternError) -> ScalarSet {
        let open = i - 1
        var set = ScalarSet()
        if peek == "^" { set.negated = true; i += 1 }
        var first = true
        while true {
            guard let c = peek else { throw PatternError(problem: "has a '[' at position \(open) that is never closed") }
            if c == "]" && !first { i += 1; break }
            first = false
            if c == "[" { throw PatternError(problem: "nests a class at position \(i), which pare does not implement") }
            if c == "&", i + 1 < scalars.count, scalars[i + 1] == "&" {
                throw PatternError(problem: "intersects classes at position \(i), which pare does not implement")
            }
            var low: UInt32
            if c == "\\" {
                i += 1
                guard peek != nil else { throw PatternError(problem: "ends with a lone backslash") }
                if let inner = try parseClassEscape() {
                    if inner.negated {
                        if inner.ranges.isEmpty { set.complementedClasses.append(inner.classes) } else {
                            // \H inside brackets: the complement of the hex digits as ranges.
                            set.ranges += [0...47, 58...64, 71...96, 103...0x10FFFF]
                        }
                    } else {
                        set.classes |= inner.classes
                        set.ranges += inner.ranges
                    }
                    continue
                }
                low = try parseScalarEscape()
            } else {
                low = c.value
                i += 1
            }
            // A range `a-z`, unless the dash closes the class.
            if peek == "-", i + 1 < scalars.count, scalars[i + 1] != "]" {
                i += 1
                var high: UInt32
                if scalars[i] == "\\" {
                    i += 1
                    guard peek != nil else { throw PatternError(problem: "ends with a lone backslash") }
                    high = try parseScalarEscape()
                } else {
                    high = scalars[i].value
                    i += 1
                }
                guard low <= high else { throw PatternError(problem: "has an empty range at position \(i)") }
                set.ranges.append(low...high)
            } else {
                set.ranges.append(low...low)
            }
        }
        return set
    }
}

struct PatternCompiler {
    var program: [Pattern.Instruction] = []
    var sets: [ScalarSet] = []

    mutating func emit(_ node: PatternNode) throws(PatternError) {
        switch node {
        case .empty: break
        case let .scalar(value, ignoreCase):
            let folded = ScalarClass.fold(value)
            program.append(ignoreCase && (folded != value || Self.hasOtherCase(value)) ? .folded(folded) : .scalar(value))
        case .set(let set):
            sets.append(set)
            program.append(.set(sets.count - 1))
        case .any: program.append(.any)
        case .textStart: program.append(.textStart)
        case .textEnd: program.append(.textEnd)
        case .lineStart: program.append(.lineStart)
        case .lineEnd: program.append(.lineEnd)
        case .sequence(let items):
            for item in items { try emit(item) }
        case .alternation(let branches):
            // split L1, next; L1: a; jump end; next: split L2, … ; last branch plain
            var jumps: [Int] = []
            for (k, branch) in branches.enumerated() {
                if k < branches.count - 1 {
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    try emit(branch)
                    jumps.append(program.count)
                    program.append(.jump(-1))
                    program[split] = .split(split + 1, program.count)
                } else {
                    try emit(branch)
                }
            }
            for j in jumps { program[j] = .jump(program.count) }
        case let .repeated(body, minimum, maximum, greedy):
            guard minimum <= 1000, (maximum ?? 0) <= 1000 else { throw PatternError(problem: "repeats more than 1000 times") }
            for _ in 0..<minimum { try emit(body) }
            if let maximum {
                // Each optional copy: split body, end — nested so that a skipped copy skips the rest.
                var splits: [Int] = []
                for _ in minimum..<maximum {
                    splits.append(program.count)
                    program.append(.split(-1, -1))
                    try emit(body)
                }
                let end = program.count
                for s in splits { program[s] = greedy ? .split(s + 1, end) : .split(end, s + 1) }
            } else {
                // loop: split body, end; body; jump loop
                let loop = program.count
                program.append(.split(-1, -1))
                try emit(body)
                program.append(.jump(loop))
                let end = program.count
                program[loop] = greedy ? .split(loop + 1, end) : .split(end, loop + 1)
            }
        case let .lookahead(body, negated):
            let at = program.count
            program.append(.lookahead(negated: negated, next: -1))
            try emit(body)
            program.append(.succeed)
            program[at] = .lookahead(negated: negated, next: program.count)
        }
    }

    private static func hasOtherCase(_ value: UInt32) -> Bool {
        guard let s = Unicode.Scalar(value) else { return false }
        return s.properties.uppercaseMapping != String(s) || s.properties.lowercaseMapping != String(s)
    }
}
