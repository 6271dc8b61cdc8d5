//! Canonical JSON: the one serialisation of every JSON blob cairn writes, so the same
//! value always gives the same bytes.

/// Serialises any value as canonical JSON (compact, keys sorted). Goes through
/// `serde_json::Value`, whose maps are sorted: oci-spec's `HashMap` fields would
/// otherwise serialise in a different order on every run.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("OCI types serialise to JSON");
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn canonical_json_sorts_hash_map_keys() {
        let map: HashMap<String, u32> = (0..50).map(|i| (format!("k{i:02}"), i)).collect();
        let text = String::from_utf8(canonical_json(&map)).unwrap();
        let expected: Vec<String> = (0..50).map(|i| format!("\"k{i:02}\":{i}")).collect();
        assert_eq!(text, format!("{{{}}}", expected.join(",")));
    }
}
