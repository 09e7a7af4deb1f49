extension Pattern {
    /// The text a pattern runs over: scalar values and their class masks, side by side.
    struct Subject {
        let scalars: UnsafeBufferPointer<UInt32>
        let masks: UnsafeBufferPointer<UInt32>
        var count: Int { scalars.count }
    }

    /// The end of the leftmost-first match that starts at `start`, or nil.
    /// `stack` is the caller's backtracking storage, reused across calls.
    func match(_ subject: Subject, at start: Int, stack: inout [Int]) -> Int? {
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        return run(subject, pc: 0, position: start, stack: &stack, base: base)
    }

    /// Every non-overlapping match, left to right, as Oniguruma's search gives them: after an
    /// empty match the search moves on one scalar.
    func matches(in subject: Subject, stack: inout [Int], _ body: (Range<Int>) -> Void) {
        var position = 0
        while position < subject.count {
            if let end = match(subject, at: position, stack: &stack) {
                body(position..<end)
                position = end > position ? end : position + 1
            } else {
                position += 1
            }
        }
    }

    /// The backtracking matcher: `stack` holds (pc, position) pairs above `base`.
    private func run(_ subject: Subject, pc start: Int, position: Int, stack: inout [Int], base: Int) -> Int? {
        var pc = start
        var at = position
        let n = subject.count
        while true {
            var failed = false
            switch program[pc] {
            case .scalar(let value):
                if at < n && subject.scalars[at] == value { pc += 1; at += 1 } else { failed = true }
            case .folded(let value):
                if at < n && ScalarClass.fold(subject.scalars[at]) == value { pc += 1; at += 1 } else { failed = true }
            case .set(let index):
                if at < n && sets[index].contains(subject.scalars[at], mask: subject.masks[at]) { pc += 1; at += 1 } else { failed = true }
            case .any:
                if at < n && subject.scalars[at] != 0x0A { pc += 1; at += 1 } else { failed = true }
            case let .split(first, second):
                stack.append(second)
                stack.append(at)
                pc = first
            case .jump(let target):
                pc = target
            case let .lookahead(negated, next):
                let inner = stack.count
                let found = run(subject, pc: pc + 1, position: at, stack: &stack, base: inner) != nil
                stack.removeSubrange(inner...)
                if found != negated { pc = next } else { failed = true }
            case .succeed, .match:
                return at
            case .textStart:
                if at == 0 { pc += 1 } else { failed = true }
            case .textEnd:
                if at == n { pc += 1 } else { failed = true }
            case .lineStart:
                if at == 0 || subject.scalars[at - 1] == 0x0A { pc += 1 } else { failed = true }
            case .lineEnd:
                if at == n || subject.scalars[at] == 0x0A { pc += 1 } else { failed = true }
            }
            if failed {
                guard stack.count > base else { return nil }
                at = stack.removeLast()
                pc = stack.removeLast()
            }
        }
    }
}
