//! What goes into `data`: `--set` overrides, `--agents` and `--scores` for
//! batches, and the test marker.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

/// One `--set PATH=VALUE`: a field of `data` (a dotted path reaches into
/// nested objects) and its JSON value.
#[derive(Clone, Debug)]
pub(crate) struct FieldSet {
    path: Vec<String>,
    value: Value,
}

/// Parses `--set PATH=VALUE`. The value is JSON when it parses as JSON
/// (`72`, `1.5`, `true`, `null`, `"72"`, `[1]`, `{"a": 1}`), a string otherwise.
pub(crate) fn parse_set(text: &str) -> Result<FieldSet, String> {
    let Some((path, value)) = text.split_once('=') else {
        return Err(format!(
            "expected FIELD=VALUE, e.g. agentName=Bob or aiScore=72; got {text:?} (no `=`)"
        ));
    };
    let path: Vec<String> = path.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "the field name in {text:?} is empty or has an empty part; \
             give a name such as agentName, or a dotted path such as meta.source"
        ));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok(FieldSet { path, value })
}

impl FieldSet {
    /// Sets the field in `data`, creating the objects of a dotted path.
    pub(crate) fn apply(&self, data: &mut Map<String, Value>) -> Result<(), String> {
        let (last, parents) = self
            .path
            .split_last()
            .expect("parse_set: at least one part");
        let mut object = data;
        for (depth, part) in parents.iter().enumerate() {
            let slot = object
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            object = match slot {
                Value::Object(inner) => inner,
                _ => {
                    return Err(format!(
                        "--set {}: `{}` is not an object, so it has no field `{}`; \
                         set `{}` itself, or use another name",
                        self.path.join("."),
                        self.path[..=depth].join("."),
                        self.path[depth + 1],
                        self.path[..=depth].join("."),
                    ))
                }
            };
        }
        object.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

/// `--agents A,B,C`: agent names, used round-robin.
#[derive(Clone, Debug)]
pub(crate) struct Agents(Vec<String>);

/// Parses `--agents`: comma-separated names, none empty.
pub(crate) fn parse_agents(text: &str) -> Result<Agents, String> {
    let names: Vec<String> = text.split(',').map(|n| n.trim().to_owned()).collect();
    if names.iter().any(String::is_empty) {
        return Err(format!(
            "expected comma-separated agent names, e.g. Ana,Bob,Chen; got {text:?} (an empty name)"
        ));
    }
    Ok(Agents(names))
}

impl Agents {
    /// The names, in order.
    pub(crate) fn names(&self) -> &[String] {
        &self.0
    }

    /// The name and agent id of delivery `index` (round-robin); the id is
    /// `agent_` and the name in lowercase with other characters as `_`.
    pub(crate) fn pick(&self, index: usize) -> (&str, String) {
        let name = &self.0[index % self.0.len()];
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        (name, format!("agent_{slug}"))
    }
}

/// The highest AI score `--scores` takes (Kendo's scores are 0 to 100).
const MAX_SCORE: u32 = 100;

/// Parses `--scores LOW..HIGH` (inclusive) or a single `SCORE`.
pub(crate) fn parse_scores(text: &str) -> Result<RangeInclusive<u32>, String> {
    let bound = |part: &str| {
        part.trim().parse::<u32>().ok().filter(|n| *n <= MAX_SCORE).ok_or_else(|| {
            format!("expected LOW..HIGH with whole numbers from 0 to {MAX_SCORE}, e.g. 40..95; got {text:?}")
        })
    };
    let (low, high) = match text.split_once("..") {
        Some((low, high)) => (bound(low)?, bound(high.strip_prefix('=').unwrap_or(high))?),
        None => {
            let score = bound(text)?;
            (score, score)
        }
    };
    if low > high {
        return Err(format!(
            "the range {text:?} is empty: LOW must not exceed HIGH; did you mean {high}..{low}?"
        ));
    }
    Ok(low..=high)
}

/// Marks `data` as a test delivery (`"_isTest": true`), or removes the
/// marker for a real one.
pub(crate) fn mark_test(data: &mut Map<String, Value>, test: bool) {
    if test {
        data.insert("_isTest".to_owned(), Value::Bool(true));
    } else {
        data.remove("_isTest");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(data: Value, sets: &[&str]) -> Result<Value, String> {
        let Value::Object(mut data) = data else {
            panic!("an object")
        };
        for text in sets {
            parse_set(text)?.apply(&mut data)?;
        }
        Ok(Value::Object(data))
    }

    #[test]
    fn set_keeps_json_types_and_falls_back_to_strings() {
        let data = set(
            json!({ "agentName": "Sales Agent", "aiScore": "87" }),
            &[
                "agentName=Bob",
                "aiScore=72",
                "duration=1.5",
                "flag=true",
                "gone=null",
                "quoted=\"72\"",
                "list=[1,2]",
                "empty=",
                "eq=a=b",
            ],
        )
        .unwrap();
        assert_eq!(
            data,
            json!({ "agentName": "Bob", "aiScore": 72, "duration": 1.5, "flag": true,
                    "gone": null, "quoted": "72", "list": [1, 2], "empty": "", "eq": "a=b" })
        );
    }

    #[test]
    fn set_with_a_dotted_path_creates_nested_objects() {
        let data = set(json!({ "meta": { "a": 1 } }), &["meta.b.c=2", "x.y=z"]).unwrap();
        assert_eq!(
            data,
            json!({ "meta": { "a": 1, "b": { "c": 2 } }, "x": { "y": "z" } })
        );
    }

    #[test]
    fn set_refuses_text_without_a_name_or_a_path_through_a_value() {
        for text in ["noequals", "=1", "a..b=1", ".a=1", "a.=1"] {
            assert!(parse_set(text).is_err(), "{text}");
        }
        let error = set(json!({ "agentName": "x" }), &["agentName.first=Bob"]).unwrap_err();
        assert!(error.contains("`agentName` is not an object"), "{error}");
    }

    #[test]
    fn scores_are_an_inclusive_range_within_0_to_100() {
        assert_eq!(parse_scores("40..95"), Ok(40..=95));
        assert_eq!(parse_scores("40..=95"), Ok(40..=95));
        assert_eq!(parse_scores("72"), Ok(72..=72));
        for bad in ["95..40", "a..b", "40..", "..95", "40..101", "-1..5", ""] {
            assert!(parse_scores(bad).is_err(), "{bad}");
        }
        assert!(parse_scores("95..40").unwrap_err().contains("40..95"));
    }

    #[test]
    fn agents_are_used_round_robin_with_ids_from_their_names() {
        let agents = parse_agents("Ana, Bob Lee,Chen").unwrap();
        let picked: Vec<(String, String)> = (0..4)
            .map(|i| {
                let (name, id) = agents.pick(i);
                (name.to_owned(), id)
            })
            .collect();
        assert_eq!(
            picked[1],
            ("Bob Lee".to_owned(), "agent_bob_lee".to_owned())
        );
        assert_eq!(picked[3], ("Ana".to_owned(), "agent_ana".to_owned()));
        for bad in ["", "A,,B", "A,", " "] {
            assert!(parse_agents(bad).is_err(), "{bad:?}");
        }
    }
}
