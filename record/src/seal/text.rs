//! The canonical encoding straight from JSON text, without building a JSON tree.
//!
//! [`canonical_from_text`] gives the bytes that [`super::canonical_bytes`] gives for the tree
//! serde_json parses from the same text, or `None` where it cannot be sure of that (then the
//! caller takes the tree path). The post seals every record it stores: its envelopes come from
//! `serde_json::to_vec` (compact, keys in declaration order), and building and sorting a tree
//! of them was a third of the sealing time. Pure: bytes in, bytes out.
//!
//! What the tree path does, and how the text path matches it:
//! - **Objects**: keys sorted by their bytes. Here the members are written one after the other,
//!   then reordered when they were not in order. A key with an escape (`\`) is compared by its
//!   unescaped bytes there; here it gives `None`. Duplicate keys (the tree keeps the last): `None`.
//! - **`seal.hash` and `seal.sig`** of the envelope's own seal (depth 1) are left out, as there.
//! - **Strings** are written by serde_json's writer there. A string without `\` and without a
//!   control character is written the same by it, so it is copied; one with `\` is decoded and
//!   written by serde_json here too.
//! - **Numbers**: a plain integer that fits in 18 digits is copied (serde_json parses it to an
//!   integer and writes the same digits); any other number is parsed and written by serde_json,
//!   as there.
//! - Whitespace between tokens is skipped; anything that is not JSON gives `None`, as does
//!   nesting deeper than serde_json's parser takes.

use serde_json::Number;

/// Nesting deeper than this gives `None` (serde_json's parser stops at 128).
const MAX_DEPTH: usize = 100;

/// The canonical encoding of the envelope that `text` is, or `None` where only the tree path
/// can say (see the module documentation).
pub fn canonical_from_text(text: &[u8]) -> Option<Vec<u8>> {
    // Valid JSON text is UTF-8 (serde_json refuses anything else, in strings or out of them).
    std::str::from_utf8(text).ok()?;
    let mut w = Writer {
        text,
        pos: 0,
        scratch: Vec::new(),
        members: Vec::new(),
        // Compact text has no byte below 0x20 at all; only otherwise is each string checked.
        check_controls: text.iter().any(|&b| b < 0x20),
    };
    let mut out = Vec::with_capacity(text.len());
    w.value(&mut out, 0, false)?;
    w.skip_ws();
    (w.pos == text.len()).then_some(out)
}

struct Writer<'a> {
    text: &'a [u8],
    pos: usize,
    /// Where an object's members are moved while they are put in order.
    scratch: Vec<u8>,
    /// The members of the objects being written, innermost last (one allocation for all).
    members: Vec<Member<'a>>,
    /// Whether strings must be checked for raw control characters (invalid JSON).
    check_controls: bool,
}

/// One member of an object being written: its key (raw, without quotes) and where
/// `"key":value` is in the output.
struct Member<'a> {
    key: &'a [u8],
    start: usize,
    end: usize,
}

impl<'a> Writer<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// `depth` 0 is the envelope; `is_seal`: this is the envelope's `seal` object.
    fn value(&mut self, out: &mut Vec<u8>, depth: usize, is_seal: bool) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'{' => self.object(out, depth, is_seal),
            b'[' => self.array(out, depth),
            b'"' => {
                let raw = self.string()?;
                if self.check_controls && raw.iter().any(|&b| b < 0x20) {
                    return None;
                }
                write_string(raw, out)
            }
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            _ => self.number(out),
        }
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.get(self.pos..end)? == word).then(|| {
            out.extend_from_slice(word);
            self.pos = end;
        })
    }

    /// A string token; returns its raw content (between the quotes, escapes as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.pos + 1;
        let mut i = start;
        loop {
            i += self
                .text
                .get(i..)?
                .iter()
                .position(|&b| b == b'"' || b == b'\\')?;
            if self.text.get(i) == Some(&b'"') {
                break;
            }
            i += 2;
        }
        self.pos = i + 1;
        self.text.get(start..i)
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        let token = self.text.get(start..self.pos)?;
        let digits = token.strip_prefix(b"-").unwrap_or(token);
        let plain_integer = !digits.is_empty()
            && digits.len() <= 18
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || (digits.len() == 1 && token.len() == 1));
        if plain_integer {
            out.extend_from_slice(token);
        } else {
            let n: Number = serde_json::from_slice(token).ok()?;
            serde_json::to_writer(&mut *out, &n).ok()?;
        }
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.pos += 1;
        out.push(b'[');
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.value(out, depth + 1, false)?;
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    out.push(b',');
                }
                b']' => {
                    self.pos += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize, is_seal: bool) -> Option<()> {
        self.pos += 1;
        let start = out.len();
        let base = self.members.len();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            out.extend_from_slice(b"{}");
            return Some(());
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            if key.iter().any(|&b| b == b'\\' || b < 0x20) {
                return None;
            }
            self.eat(b':')?;
            let member_start = out.len();
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            let child_is_seal = depth == 0 && key == b"seal";
            self.value(out, depth + 1, child_is_seal)?;
            if is_seal && (key == b"hash" || key == b"sig") {
                out.truncate(member_start);
            } else {
                self.members.push(Member {
                    key,
                    start: member_start,
                    end: out.len(),
                });
            }
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        let members = self.members.get_mut(base..)?;
        if !members.windows(2).all(|m| m[0].key < m[1].key) {
            members.sort_unstable_by(|a, b| a.key.cmp(b.key));
            if members.windows(2).any(|m| m[0].key == m[1].key) {
                return None;
            }
        }
        // Members are written back to back; put them in order with braces and commas.
        self.scratch.clear();
        self.scratch.extend_from_slice(out.get(start..)?);
        out.truncate(start);
        out.push(b'{');
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.scratch.get(m.start - start..m.end - start)?);
        }
        out.push(b'}');
        self.members.truncate(base);
        Some(())
    }
}

/// A string's raw content as serde_json writes the string it stands for.
fn write_string(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if raw.contains(&b'\\') {
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        let s: String = serde_json::from_slice(&quoted).ok()?;
        serde_json::to_writer(&mut *out, &s).ok()?;
    } else {
        out.push(b'"');
        out.extend_from_slice(raw);
        out.push(b'"');
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;
    use crate::seal::canonical_bytes;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What the tree path gives for `text` (as `prepare` did before the text path).
    fn tree_path(text: &[u8]) -> Vec<u8> {
        canonical_bytes(&serde_json::from_slice::<Value>(text).unwrap_or(Value::Null))
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("seal".to_owned()),
            Just("hash".to_owned()),
            Just("sig".to_owned()),
            Just("prev".to_owned()),
            "[a-zA-Z_]{1,8}",
            "\\PC{1,4}",
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            (-1000i64..1000).prop_map(|n| Value::from(n as f64 / 8.0)),
            any::<String>().prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A serialised struct: fields in declaration order (not sorted), an `f32` written in its
    /// own shortest form, a nested seal whose `hash` and `sig` are left out.
    #[derive(serde::Serialize)]
    struct Sample {
        seq: u64,
        post: String,
        confidence: f32,
        gross_kg: f64,
        seal: SampleSeal,
        axles: Vec<i32>,
        extra: Value,
    }

    #[derive(serde::Serialize)]
    struct SampleSeal {
        prev: String,
        sig: String,
        key: String,
        hash: String,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn compact_text_gives_the_tree_paths_bytes(v in json()) {
            let text = serde_json::to_vec(&v).unwrap();
            let no_escapes = !text.contains(&b'\\');
            match canonical_from_text(&text) {
                Some(fast) => prop_assert_eq!(fast, tree_path(&text)),
                // Only an escape somewhere may send it to the tree path.
                None => prop_assert!(!no_escapes, "no fast path for {}", String::from_utf8_lossy(&text)),
            }
        }

        #[test]
        fn pretty_text_gives_the_tree_paths_bytes_too(v in json()) {
            let text = serde_json::to_vec_pretty(&v).unwrap();
            if let Some(fast) = canonical_from_text(&text) {
                prop_assert_eq!(fast, tree_path(&text));
            }
        }

        #[test]
        fn a_serialised_struct_takes_the_text_path(
            seq in any::<u64>(),
            post in any::<String>(),
            confidence in any::<f32>().prop_filter("finite", |f| f.is_finite()),
            gross_kg in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            axles in prop::collection::vec(any::<i32>(), 0..4),
            extra in json(),
        ) {
            let s = Sample {
                seq, post, confidence, gross_kg, axles, extra,
                seal: SampleSeal { prev: "00".into(), sig: "ab".into(), key: "cd".into(), hash: "ef".into() },
            };
            let text = serde_json::to_vec(&s).unwrap();
            let tree = tree_path(&text);
            let sealed: Value = serde_json::from_slice(&tree).unwrap();
            prop_assert_eq!(&sealed["seal"], &serde_json::json!({"prev": "00", "key": "cd"}));
            if let Some(fast) = canonical_from_text(&text) {
                prop_assert_eq!(fast, tree);
            } else {
                // Only a key with an escape in `extra` sends it to the tree path.
                prop_assert!(String::from_utf8_lossy(&text).contains('\\'));
            }
        }

        #[test]
        fn any_bytes_give_the_tree_paths_bytes_or_nothing(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Some(fast) = canonical_from_text(&bytes) {
                prop_assert_eq!(fast, tree_path(&bytes));
            }
        }
    }

    #[test]
    fn what_only_the_tree_path_can_say_gives_none() {
        for text in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"a\u0062":1}"#,
            br#"{"a":01}"#,
            br#"[1,]"#,
            br#"{"a":1} x"#,
            br#"{"a":"x"#,
            b"\"\x01\"",
            b"",
        ] {
            assert_eq!(
                canonical_from_text(text),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn keys_are_sorted_and_the_seals_hash_and_sig_left_out() {
        let text = br#"{"seq":2,"seal":{"sig":"s","prev":"p","hash":"h","key":"k"},"crossing":{"b":[1,2.5e3,-0.0],"a":"\u00e9\n"}}"#;
        let fast = canonical_from_text(text).unwrap();
        assert_eq!(
            String::from_utf8(fast.clone()).unwrap(),
            r#"{"crossing":{"a":"é\n","b":[1,2500.0,-0.0]},"seal":{"key":"k","prev":"p"},"seq":2}"#
        );
        assert_eq!(fast, tree_path(text));
    }
}
