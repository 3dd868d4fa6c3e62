//! Reading the request's wire view (`vpsie_proto::safety::v1::wire`): the snapshot as decoded
//! straight from the request buffer, with strings as bytes and maps as lists of pairs. The engine
//! checks UTF-8 where it reads a string and applies the map rules (sorted by key, the last of
//! duplicate keys wins) where it reads a map.

use prost::Message;
use prost::bytes::Bytes;
pub use vpsie_proto::safety::v1::wire as w;

use super::EngineError;

/// A string field as text.
#[inline]
pub fn text(bytes: &[u8], path: impl FnOnce() -> String) -> Result<&str, EngineError> {
    // Nearly every string of a snapshot is short ASCII, which `is_ascii` checks a word at a time
    // (`from_utf8` walks short strings byte by byte: it was a tenth of an index build).
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| {
        EngineError::invalid(
            path(),
            format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// Each element of a repeated string field as text.
pub fn texts<'a>(
    list: &'a [Bytes],
    path: &dyn Fn() -> String,
) -> Result<Vec<&'a str>, EngineError> {
    list.iter()
        .enumerate()
        .map(|(i, item)| text(item, || format!("{}[{i}]", path())))
        .collect()
}

/// A `map<string, string>` field as (key, value) text pairs sorted by key, one per key (the
/// last in wire order, as a protobuf map keeps it).
pub fn map<'a>(
    pairs: &'a [w::StringPair],
    path: &dyn Fn() -> String,
) -> Result<Vec<(&'a str, &'a str)>, EngineError> {
    let mut entries = Vec::with_capacity(pairs.len());
    for pair in pairs.iter().rev() {
        let key = text(&pair.key, || format!("{} (a key)", path()))?;
        let value = text(&pair.value, || format!("{}[{key:?}]", path()))?;
        entries.push((key, value));
    }
    // Stable: among equal keys the last in wire order (first after the reversal) stays.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.dedup_by(|later, kept| later.0 == kept.0);
    Ok(entries)
}

/// The value of `key` in a map field, as the map keeps it (the last duplicate wins).
pub fn lookup<'a>(pairs: &'a [w::StringPair], key: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .rev()
        .find(|pair| pair.key.as_ref() == key.as_bytes())
        .map(|pair| pair.value.as_ref())
}

/// Re-reads an owned message as its wire view (in-process callers and tests hold owned messages;
/// the view is what the engine reads).
pub fn view_of<V: Message + Default>(owned: &impl Message) -> Result<V, EngineError> {
    V::decode(Bytes::from(owned.encode_to_vec())).map_err(|e| {
        EngineError::invalid("request", format!("does not re-read as its wire view: {e}"))
    })
}

/// Test input: an owned message from its proto3 JSON, re-read as its wire view.
#[cfg(test)]
pub fn view_of_json<O, V>(json: &str) -> V
where
    O: Message + serde::de::DeserializeOwned,
    V: Message + Default,
{
    let owned: O = serde_json::from_str(json).expect("test JSON parses");
    view_of(&owned).expect("an owned message re-reads as its view")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::labels::Interner;
    use crate::engine::tests::{node, pod, snapshot, view};
    use crate::engine::{Deadline, Index, can_remove_node};
    use proptest::prelude::*;
    use vpsie_proto::safety::v1 as pb;

    fn pair(key: &str, value: &[u8]) -> w::StringPair {
        w::StringPair {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value),
        }
    }

    #[test]
    fn maps_keep_the_last_of_duplicate_keys_in_key_order() {
        let pairs = [pair("b", b"1"), pair("a", b"2"), pair("b", b"3")];
        let read = map(&pairs, &|| "labels".into()).expect("valid");
        assert_eq!(read, vec![("a", "2"), ("b", "3")]);
        assert_eq!(lookup(&pairs, "b"), Some(&b"3"[..]));
        assert_eq!(lookup(&pairs, "c"), None);

        let mut strings = Interner::default();
        let labels =
            crate::engine::labels::Labels::from_pairs(&pairs, &mut strings, &|| "labels".into())
                .expect("valid");
        let b = strings.get("b").expect("interned");
        assert_eq!(labels.get(b).map(|v| strings.name(v)), Some("3"));
    }

    #[test]
    fn a_duplicate_request_counts_once_with_its_last_value() {
        // A client that writes the map entry twice: only the last one is the request.
        let request = pb::CanRemoveNodeRequest {
            snapshot: Some(snapshot(
                vec![node("n1", "1", "1Gi"), node("n2", "1", "1Gi")],
                vec![pod("default", "web", "n1", "100m", "10Mi")],
                vec![],
            )),
            node_name: "n1".into(),
            options: None,
        };
        let mut request: w::CanRemoveNodeRequest = view(&request);
        let containers = &mut request.snapshot.as_mut().expect("snapshot").pods[0]
            .spec
            .as_mut()
            .expect("spec")
            .containers;
        let requests = &mut containers[0]
            .resources
            .as_mut()
            .expect("resources")
            .requests;
        requests.insert(0, pair("cpu", b"12x"));
        requests.push(pair("cpu", b"2"));
        let answer =
            can_remove_node(&request, Deadline::NONE).expect("the bad value is overridden");
        assert!(!answer.removable, "2 cpu fit nowhere: {answer:?}");
    }

    #[test]
    fn text_reads_ascii_and_other_utf8() {
        assert_eq!(text(b"node-1", || "f".into()), Ok("node-1"));
        assert_eq!(text("zürich".as_bytes(), || "f".into()), Ok("zürich"));
        assert_eq!(text(b"", || "f".into()), Ok(""));
    }

    #[test]
    fn invalid_utf8_is_an_invalid_argument_naming_the_field() {
        let owned = snapshot(
            vec![node("n1", "1", "1Gi")],
            vec![pod("default", "web", "n1", "100m", "10Mi")],
            vec![],
        );
        let mut snapshot: w::ClusterSnapshot = view(&owned);
        snapshot.pods[0].metadata.as_mut().expect("metadata").labels[0].value =
            Bytes::from_static(b"\xffweb");
        let error = Index::build(&snapshot).expect_err("not UTF-8");
        assert_eq!(
            error,
            EngineError::invalid(
                "snapshot.pods[0].metadata.labels[\"app\"]",
                "not valid UTF-8 (at byte 0)"
            )
        );
        let mut snapshot: w::ClusterSnapshot = view(&owned);
        snapshot.nodes[0].metadata.as_mut().expect("metadata").name = Bytes::from_static(b"n\xc3");
        let error = Index::build(&snapshot).expect_err("not UTF-8");
        assert_eq!(
            error.to_string(),
            "snapshot.nodes[0].metadata.name: not valid UTF-8 (at byte 1)"
        );
    }

    proptest! {
        /// Whatever bytes arrive, the view decodes them or says why, and the engine answers or
        /// says why: nothing panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = w::CanRemoveNodeRequest::decode(Bytes::from(bytes)) {
                let _ = can_remove_node(&request, Deadline::NONE);
            }
        }

        /// The ASCII shortcut changes nothing: any bytes read as text exactly when they are
        /// UTF-8, and an error says where they stop being UTF-8.
        #[test]
        fn text_agrees_with_utf8(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            match (text(&bytes, || "f".into()), std::str::from_utf8(&bytes)) {
                (Ok(read), Ok(want)) => prop_assert_eq!(read, want),
                (Err(error), Err(want)) => prop_assert_eq!(
                    error.to_string(),
                    format!("f: not valid UTF-8 (at byte {})", want.valid_up_to())
                ),
                (read, want) => prop_assert!(false, "{:?} against {:?}", read, want),
            }
        }

        /// Every string of a valid snapshot may be replaced by arbitrary bytes.
        #[test]
        fn arbitrary_label_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..8)) {
            let owned = snapshot(
                vec![node("n1", "1", "1Gi"), node("n2", "1", "1Gi")],
                vec![pod("default", "web", "n1", "100m", "10Mi")],
                vec![],
            );
            let mut request: w::CanRemoveNodeRequest = view(&pb::CanRemoveNodeRequest {
                snapshot: Some(owned),
                node_name: "n1".into(),
                options: None,
            });
            let snapshot = request.snapshot.as_mut().expect("snapshot");
            snapshot.pods[0].metadata.as_mut().expect("metadata").labels[0].value =
                Bytes::from(value.clone());
            snapshot.nodes[1].metadata.as_mut().expect("metadata").labels[0].value =
                Bytes::from(value);
            let _ = can_remove_node(&request, Deadline::NONE);
        }
    }
}
