import OrderedJSON
import Testing

@Suite struct JSONParserTests {
    @Test func keepsKeyOrderAndDuplicates() throws {
        let value = try JSONParser.parse(#"{"z": 1, "a": 2, "z": 3}"#)
        let members = try #require(value.objectMembers)
        #expect(members.map(\.key) == ["z", "a", "z"])
        #expect(value["z"] == .number("3"))
    }

    @Test func keepsNumberSpelling() throws {
        let text = #"{"eps":1e-05,"theta":500000.0,"big":18446744073709551615,"neg":-0.5}"#
        let value = try JSONParser.parse(text)
        #expect(value.serialized() == text)
        #expect(value["big"]?.uint64Value == UInt64.max)
        #expect(value["eps"]?.intValue == nil)
    }

    @Test func decodesEscapesAndUnicode() throws {
        let value = try JSONParser.parse(#"["a\"b\\c\/\n\t", "\u00e9\ud83d\ude00", "héllo"]"#)
        #expect(value.arrayValue?.map(\.stringValue) == ["a\"b\\c/\n\t", "é😀", "héllo"])
        // Compact (safetensors headers) keeps UTF-8 as serde_json does; pretty (config.json)
        // escapes it as Python's json.dumps does by default.
        #expect(value.serialized() == "[\"a\\\"b\\\\c/\\n\\t\",\"é😀\",\"héllo\"]")
        #expect(value.serialized(.pretty).contains(#""h\u00e9llo""#))
        #expect(value.serialized(.pretty).contains(#""\u00e9\ud83d\ude00""#))
    }

    @Test(arguments: [
        "", "{", "{\"a\":1,}", "[1,]", "01", "1.", "-", "{a:1}", "\"\u{01}\"", "[1] x",
        "\"\\x\"", "\"\\ud800\"", "tru", "nul", "{\"a\" 1}", "1e", "[\"abc]",
    ])
    func rejectsMalformedText(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8InStrings() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]  // "\xC3(" is not UTF-8
        #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes) }
    }

    @Test func capsNestingDepth() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: Never.self) { try JSONParser.parse(fine) }
    }

    @Test func prettyLayoutMatchesPythonIndent2() throws {
        let value = try JSONParser.parse(#"{"a":[1,2],"b":{},"c":[],"d":{"e":null,"f":true}}"#)
        // json.dumps(obj, indent=2)
        let expected = """
            {
              "a": [
                1,
                2
              ],
              "b": {},
              "c": [],
              "d": {
                "e": null,
                "f": true
              }
            }
            """
        #expect(value.serialized(.pretty) == expected)
    }

    @Test func setReplacesOrAppends() throws {
        var value = try JSONParser.parse(#"{"a":1,"b":2}"#)
        let replaced = value.set("a", to: .string("x"))
        let appendedWithoutAsking = value.set("c", to: .null)
        let appended = value.set("c", to: .null, appendIfMissing: true)
        #expect(replaced && !appendedWithoutAsking && appended)
        #expect(value.serialized() == #"{"a":"x","b":2,"c":null}"#)
    }
}

@Suite struct StreamedMemberTests {
    func members(_ text: String) throws -> (Bool, [String]) {
        var seen: [String] = []
        let bytes = Array(text.utf8)
        var isObject = false
        var failure: JSONParseError?
        bytes.withUnsafeBytes { raw in
            do throws(JSONParseError) {
                isObject = try JSONParser.forEachMember(raw) { key, value in seen.append("\(key)=\(value.serialized())") }
            } catch { failure = error }
        }
        if let failure { throw failure }
        return (isObject, seen)
    }

    @Test func membersArriveInSourceOrderWithDuplicates() throws {
        let (isObject, seen) = try members(#" {"b": [1, 2], "a": {"x": null}, "b": "again"} "#)
        #expect(isObject)
        #expect(seen == [#"b=[1,2]"#, #"a={"x":null}"#, #"b="again""#])
    }

    @Test func aSyntaxErrorAfterMembersIsStillThrown() {
        #expect(throws: JSONParseError.self) { try members(#"{"a": 1, "b": 2,}"#) }
        #expect(throws: JSONParseError.self) { try members(#"{"a": 1} x"#) }
    }

    @Test func aValueThatIsNotAnObjectIsReportedAfterItIsChecked() throws {
        #expect(try members("[1, 2]").0 == false)
        #expect(throws: JSONParseError.self) { try members("[1, 2") }
    }
}
