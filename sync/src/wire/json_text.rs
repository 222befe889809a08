//! # JSON text taken apart without a tree
//!
//! A batch carries each record as the text the post sealed, with its seal made compact. To make
//! the seal compact (the uplink) and whole again (central), only the seal has to be found and
//! the rest copied: [`object_members`] splits an object into its members and [`array_items`] an
//! array into its items, each value as a byte range of the text. Building a JSON tree of every
//! record instead (a map per object, a string per key and value) was most of the work the post
//! and central did per record besides the signature (see BENCHMARKS.md, session 10).
//!
//! Pure: bytes in, ranges out. Only strings and brackets are read, so the text is assumed to be
//! JSON: central checks a batch's text with serde_json before taking it apart, and the post's
//! texts are serde_json's own. On text that is not JSON these give `None`, or ranges whose
//! pieces serde_json then refuses; never a panic, never a range outside the text.

use std::borrow::Cow;
use std::ops::Range;

/// One member of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member<'a> {
    /// The key, unescaped.
    pub key: Cow<'a, str>,
    /// Where the member starts (its key's opening quote).
    pub start: usize,
    /// Where its value is.
    pub value: Range<usize>,
}

/// The members of the object that `text` is, in the text's order (a key written twice is
/// there twice), or `None` when `text` is not one object.
pub(crate) fn object_members(text: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut members = Vec::new();
    walk(text, b'{', b'}', |start| {
        let key_end = string_end(text, start)?;
        let key = key(text.get(start..key_end)?)?;
        let colon = skip_ws(text, key_end);
        if text.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(text, colon + 1);
        let value_end = value_end(text, value_start)?;
        members.push(Member {
            key,
            start,
            value: value_start..value_end,
        });
        Some(value_end)
    })?;
    Some(members)
}

/// Where the items of the array that `text` is are, in order, or `None` when `text` is not one
/// array.
pub(crate) fn array_items(text: &[u8]) -> Option<Vec<Range<usize>>> {
    let mut items = Vec::new();
    walk(text, b'[', b']', |start| {
        let end = value_end(text, start)?;
        items.push(start..end);
        Some(end)
    })?;
    Some(items)
}

/// Walks the object or array (`open` ... `close`) that `text` is, whitespace around it allowed:
/// `entry` reads the entry that starts at the given position and says where it ends; the
/// commas between entries are read here.
fn walk(
    text: &[u8],
    open: u8,
    close: u8,
    mut entry: impl FnMut(usize) -> Option<usize>,
) -> Option<()> {
    let mut pos = skip_ws(text, 0);
    if text.get(pos) != Some(&open) {
        return None;
    }
    pos = skip_ws(text, pos + 1);
    if text.get(pos) != Some(&close) {
        loop {
            pos = skip_ws(text, entry(pos)?);
            match *text.get(pos)? {
                b',' => pos = skip_ws(text, pos + 1),
                byte if byte == close => break,
                _ => return None,
            }
        }
    }
    (skip_ws(text, pos + 1) == text.len()).then_some(())
}

/// A quoted key, unescaped (serde_json decodes one with escapes).
fn key(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let raw = quoted.get(1..quoted.len().checked_sub(1)?)?;
    if raw.contains(&b'\\') {
        serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(raw).ok().map(Cow::Borrowed)
    }
}

fn skip_ws(text: &[u8], mut pos: usize) -> usize {
    while matches!(text.get(pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        pos += 1;
    }
    pos
}

/// `pos` is at a string's opening quote: where the string ends (after its closing quote).
fn string_end(text: &[u8], pos: usize) -> Option<usize> {
    if text.get(pos) != Some(&b'"') {
        return None;
    }
    let mut i = pos + 1;
    loop {
        i += text
            .get(i..)?
            .iter()
            .position(|&b| b == b'"' || b == b'\\')?;
        if text.get(i) == Some(&b'"') {
            return Some(i + 1);
        }
        i += 2; // a backslash and the byte it escapes
    }
}

/// `pos` is at a value's first byte: where the value ends.
fn value_end(text: &[u8], pos: usize) -> Option<usize> {
    match text.get(pos)? {
        b'"' => string_end(text, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            loop {
                match text.get(i)? {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number or a literal: up to the next delimiter.
        _ => {
            let len = text
                .get(pos..)?
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(text.len() - pos);
            (len > 0).then_some(pos + len)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Quotes, backslashes, brackets and control characters inside strings.
            "(\\PC|[\"\\\\{}\\[\\],:\u{1}\n])*".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("(\\PC|[\"\\\\{}])*", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Compact or pretty: the splitters must not care about whitespace.
    fn text(v: &Value, pretty: bool) -> Vec<u8> {
        if pretty {
            serde_json::to_vec_pretty(v).unwrap()
        } else {
            serde_json::to_vec(v).unwrap()
        }
    }

    proptest! {
        #[test]
        fn members_are_the_objects_members(
            map in prop::collection::btree_map("(\\PC|[\"\\\\])*", json(), 0..8),
            pretty in any::<bool>(),
        ) {
            let text = text(&Value::Object(map.into_iter().collect()), pretty);
            let members = object_members(&text).unwrap();
            // What serde_json reads from the whole text (its floats need not round-trip).
            let Value::Object(map) = serde_json::from_slice(&text).unwrap() else { unreachable!() };
            prop_assert_eq!(members.len(), map.len());
            for (m, (k, v)) in members.iter().zip(&map) {
                prop_assert_eq!(m.key.as_ref(), k.as_str());
                prop_assert_eq!(&serde_json::from_slice::<Value>(&text[m.value.clone()]).unwrap(), v);
                // The member's text starts with its key.
                let quoted = serde_json::Deserializer::from_slice(&text[m.start..])
                    .into_iter::<String>()
                    .next()
                    .unwrap()
                    .unwrap();
                prop_assert_eq!(&quoted, k);
            }
            prop_assert!(array_items(&text).is_none());
        }

        #[test]
        fn items_are_the_arrays_items(items in prop::collection::vec(json(), 0..8), pretty in any::<bool>()) {
            let text = text(&Value::from(items), pretty);
            let ranges = array_items(&text).unwrap();
            let Value::Array(items) = serde_json::from_slice(&text).unwrap() else { unreachable!() };
            prop_assert_eq!(ranges.len(), items.len());
            for (r, v) in ranges.iter().zip(&items) {
                prop_assert_eq!(&serde_json::from_slice::<Value>(&text[r.clone()]).unwrap(), v);
            }
            prop_assert!(object_members(&text).is_none());
        }

        #[test]
        fn any_bytes_give_ranges_inside_the_text_or_none(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            for m in object_members(&bytes).into_iter().flatten() {
                prop_assert!(m.start < m.value.start && m.value.end <= bytes.len());
            }
            for r in array_items(&bytes).into_iter().flatten() {
                prop_assert!(r.start < r.end && r.end <= bytes.len());
            }
        }
    }

    #[test]
    fn what_is_not_one_object_or_array_is_none() {
        for text in [
            &b""[..],
            b"{",
            b"{\"a\"}",
            b"{\"a\":1,}",
            b"{\"a\":1} x",
            b"{\"a\":\"unterminated}",
            b"[1,2",
            b"[1 2]",
            b"5",
        ] {
            assert!(
                object_members(text).is_none(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
            assert!(
                array_items(text).is_none(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(object_members(b" { } ").unwrap(), []);
        assert_eq!(array_items(b" [ ] ").unwrap(), Vec::<Range<usize>>::new());
        let members = object_members(br#"{"se\u0061l":{"k":"}"},"a":[1,"]"]}"#).unwrap();
        assert_eq!(members[0].key, "seal");
        assert_eq!(members[1].value, 27..34);
    }
}
