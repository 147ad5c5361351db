//! The built-in JSON steps (`parse_json`, `filter`, `keep`, `drop`, `rename`, `key_from_field`):
//! compiling each one from its config, and running a run of consecutive JSON steps over a record.
//!
//! Invariant: a run parses the payload once into a `serde_json::Map`, applies every step to that
//! map, and serializes it once at the end, and only if a step changed the object. A run that only
//! looks at the object (`parse_json`, `filter`, `key_from_field`) leaves the payload bytes alone.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};

use super::{BuildError, StepConfig};
use crate::record::Record;

/// One compiled JSON step.
#[derive(Debug)]
pub(crate) enum JsonStep {
    /// Nothing to do at run time: every run parses the payload before its first step.
    ParseJson,
    Filter {
        path: FieldPath,
        condition: Condition,
    },
    Keep(HashSet<String>),
    Drop(Vec<String>),
    /// `(old, new)` pairs, applied all at once.
    Rename(Vec<(String, String)>),
    KeyFromField(FieldPath),
}

/// A field name, or a dotted path into nested objects.
#[derive(Debug)]
pub(crate) struct FieldPath {
    name: String,
    /// The dot-separated parts of `name`; empty when `name` has no dot.
    segments: Vec<String>,
}

#[derive(Debug)]
pub(crate) enum Condition {
    Equals(Value),
    NotEquals(Value),
    Exists(bool),
}

/// What a run of JSON steps did to a record it let through.
#[derive(Debug, Default)]
pub(crate) struct Edit {
    /// The new key, when a `key_from_field` step ran.
    pub key: Option<Vec<u8>>,
    /// The re-serialized object, when a step changed it.
    pub payload: Option<Vec<u8>>,
}

#[derive(Debug)]
pub(crate) enum RunResult {
    Pass(Edit),
    Filtered,
}

impl JsonStep {
    /// Compiles `step` (at `index` in `transform.steps`); `Ok(None)` for a step that is not a JSON
    /// step (`identity`, `user`).
    pub(crate) fn compile(index: usize, step: &StepConfig) -> Result<Option<JsonStep>, BuildError> {
        let compiled = match step {
            StepConfig::Identity | StepConfig::User { .. } => return Ok(None),
            StepConfig::ParseJson => JsonStep::ParseJson,
            StepConfig::Filter { field, equals, not_equals, exists } => {
                let path = FieldPath::compile(index, "filter", field)?;
                let condition = match (equals, not_equals, exists) {
                    (Some(value), None, None) => Condition::Equals(scalar(index, "equals", value)?),
                    (None, Some(value), None) => {
                        Condition::NotEquals(scalar(index, "not_equals", value)?)
                    }
                    (None, None, Some(exists)) => Condition::Exists(*exists),
                    _ => {
                        let set = [
                            ("equals", equals.is_some()),
                            ("not_equals", not_equals.is_some()),
                            ("exists", exists.is_some()),
                        ];
                        let set = set.iter().filter(|(_, is_set)| *is_set).map(|(key, _)| *key);
                        return Err(BuildError::FilterCondition {
                            step: index,
                            set: set.collect(),
                        });
                    }
                };
                JsonStep::Filter { path, condition }
            }
            StepConfig::Keep { fields } => JsonStep::Keep(fields.iter().cloned().collect()),
            StepConfig::Drop { fields } => JsonStep::Drop(fields.clone()),
            StepConfig::Rename { fields } => {
                let mut seen: HashMap<&str, &str> = HashMap::new();
                for (old, new) in fields {
                    if let Some(first) = seen.insert(new, old) {
                        return Err(BuildError::RenameCollision {
                            step: index,
                            first: first.to_owned(),
                            second: old.clone(),
                            new: new.clone(),
                        });
                    }
                }
                let pairs = fields.iter().filter(|(old, new)| old != new);
                JsonStep::Rename(pairs.map(|(old, new)| (old.clone(), new.clone())).collect())
            }
            StepConfig::KeyFromField { field } => {
                JsonStep::KeyFromField(FieldPath::compile(index, "key_from_field", field)?)
            }
        };
        Ok(Some(compiled))
    }
}

impl FieldPath {
    fn compile(index: usize, kind: &'static str, field: &str) -> Result<FieldPath, BuildError> {
        if field.is_empty() {
            return Err(BuildError::EmptyField { step: index, kind });
        }
        let segments = if field.contains('.') {
            field.split('.').map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        Ok(FieldPath { name: field.to_owned(), segments })
    }

    /// The top-level field named exactly `name` if there is one, else the value at the dotted
    /// path (`"a.b"` is `b` inside the object `a`).
    fn get<'m>(&self, object: &'m Map<String, Value>) -> Option<&'m Value> {
        if let Some(value) = object.get(&self.name) {
            return Some(value);
        }
        let (first, rest) = self.segments.split_first()?;
        let mut value = object.get(first)?;
        for segment in rest {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }
}

impl Condition {
    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Condition::Equals(expected), Some(value)) => json_eq(expected, value),
            (Condition::Equals(_), None) => false,
            (Condition::NotEquals(expected), Some(value)) => !json_eq(expected, value),
            (Condition::NotEquals(_), None) => true,
            (Condition::Exists(exists), value) => *exists == value.is_some(),
        }
    }
}

impl Edit {
    pub(crate) fn is_empty(&self) -> bool {
        self.key.is_none() && self.payload.is_none()
    }

    pub(crate) fn apply_to(self, record: &mut Record<'_>) {
        if let Some(key) = self.key {
            record.key = Some(Cow::Owned(key));
        }
        if let Some(payload) = self.payload {
            record.payload = Some(Cow::Owned(payload));
        }
    }
}

/// Runs `steps` over `payload`: `Err(reason)` rejects the record.
pub(crate) fn run(steps: &[JsonStep], payload: Option<&[u8]>) -> Result<RunResult, String> {
    let mut object = parse_object(payload)?;
    let mut changed = false;
    let mut key = None;
    for step in steps {
        match step {
            JsonStep::ParseJson => {}
            JsonStep::Filter { path, condition } => {
                if !condition.matches(path.get(&object)) {
                    return Ok(RunResult::Filtered);
                }
            }
            JsonStep::Keep(fields) => {
                let before = object.len();
                object.retain(|name, _| fields.contains(name));
                changed |= object.len() != before;
            }
            JsonStep::Drop(fields) => {
                for field in fields {
                    changed |= object.shift_remove(field).is_some();
                }
            }
            JsonStep::Rename(pairs) => changed |= rename(&mut object, pairs),
            JsonStep::KeyFromField(path) => key = Some(key_bytes(path, &object)?),
        }
    }
    let payload = if changed {
        let bytes = serde_json::to_vec(&object)
            .map_err(|error| format!("cannot serialize the transformed object: {error}"))?;
        Some(bytes)
    } else {
        None
    };
    Ok(RunResult::Pass(Edit { key, payload }))
}

fn parse_object(payload: Option<&[u8]>) -> Result<Map<String, Value>, String> {
    let bytes = payload.ok_or_else(|| "record has no payload".to_owned())?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!("payload is {}, not an object", describe(&other))),
        Err(error) => Err(format!("payload is not valid JSON: {error}")),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "JSON null",
        Value::Bool(_) => "a JSON boolean",
        Value::Number(_) => "a JSON number",
        Value::String(_) => "a JSON string",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "a JSON object",
    }
}

/// Renames all pairs at once (so `{ a = "b", b = "a" }` swaps), each field keeping its place; a
/// new name replaces an existing field of that name. Returns whether anything moved.
fn rename(object: &mut Map<String, Value>, pairs: &[(String, String)]) -> bool {
    let present: Vec<&(String, String)> =
        pairs.iter().filter(|(old, _)| object.contains_key(old)).collect();
    if present.is_empty() {
        return false;
    }
    for (name, value) in std::mem::take(object) {
        match present.iter().find(|(old, _)| *old == name) {
            Some((_, new)) => {
                object.insert(new.clone(), value);
            }
            // A field that a renamed one replaces.
            None if present.iter().any(|(_, new)| *new == name) => {}
            None => {
                object.insert(name, value);
            }
        }
    }
    true
}

/// A string's bytes without quotes, any other value's compact JSON text; a missing or null field
/// rejects the record.
fn key_bytes(path: &FieldPath, object: &Map<String, Value>) -> Result<Vec<u8>, String> {
    match path.get(object) {
        None => Err(format!("field {:?} is missing", path.name)),
        Some(Value::Null) => Err(format!("field {:?} is null", path.name)),
        Some(Value::String(text)) => Ok(text.as_bytes().to_vec()),
        Some(other) => serde_json::to_vec(other)
            .map_err(|error| format!("field {:?} cannot be written as a key: {error}", path.name)),
    }
}

/// The JSON value a filter compares with: a TOML string, integer, finite float or boolean.
fn scalar(index: usize, key: &'static str, value: &toml::Value) -> Result<Value, BuildError> {
    let json = match value {
        toml::Value::String(text) => Some(Value::String(text.clone())),
        toml::Value::Integer(integer) => Some(Value::from(*integer)),
        toml::Value::Float(float) => Number::from_f64(*float).map(Value::Number),
        toml::Value::Boolean(boolean) => Some(Value::Bool(*boolean)),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    };
    json.ok_or_else(|| BuildError::FilterValue {
        step: index,
        key,
        value: value.to_string(),
        found: value.type_str(),
    })
}

/// JSON equality where numbers compare by value: `3 == 3.0`, `-1 == -1` whether stored as i64 or
/// u64. Integers compare exactly; as soon as one side is a float both compare as f64.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => match (as_i128(a), as_i128(b)) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        _ => a == b,
    }
}

fn as_i128(number: &Number) -> Option<i128> {
    number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn compile(step: StepConfig) -> JsonStep {
        JsonStep::compile(0, &step).expect("compiles").expect("is a JSON step")
    }

    fn filter(
        field: &str,
        equals: Option<toml::Value>,
        not_equals: Option<toml::Value>,
        exists: Option<bool>,
    ) -> StepConfig {
        StepConfig::Filter { field: field.to_owned(), equals, not_equals, exists }
    }

    fn run_on(steps: &[JsonStep], payload: &str) -> Result<RunResult, String> {
        run(steps, Some(payload.as_bytes()))
    }

    fn passes(steps: &[JsonStep], payload: &str) -> bool {
        matches!(run_on(steps, payload), Ok(RunResult::Pass(_)))
    }

    fn edited(steps: &[JsonStep], payload: &str) -> Edit {
        match run_on(steps, payload) {
            Ok(RunResult::Pass(edit)) => edit,
            other => panic!("expected Pass, got {other:?}"),
        }
    }

    fn payload_json(edit: &Edit) -> Value {
        serde_json::from_slice(edit.payload.as_deref().expect("payload rewritten")).unwrap()
    }

    #[test]
    fn parse_json_rejects_what_is_not_an_object() {
        let steps = [JsonStep::ParseJson];
        assert_eq!(run(&steps, None).unwrap_err(), "record has no payload");
        assert_eq!(
            run_on(&steps, "").unwrap_err(),
            "payload is not valid JSON: EOF while parsing a value at line 1 column 0"
        );
        assert_eq!(
            run_on(&steps, "nope").unwrap_err(),
            "payload is not valid JSON: expected ident at line 1 column 2"
        );
        assert_eq!(run_on(&steps, "[1]").unwrap_err(), "payload is a JSON array, not an object");
        assert_eq!(run_on(&steps, "3").unwrap_err(), "payload is a JSON number, not an object");
        assert_eq!(run_on(&steps, "\"s\"").unwrap_err(), "payload is a JSON string, not an object");
        assert_eq!(run_on(&steps, "null").unwrap_err(), "payload is JSON null, not an object");
        assert!(edited(&steps, r#"{"a":1}"#).is_empty());
    }

    #[test]
    fn filter_equals_not_equals_exists() {
        let level = |v: &str| Some(toml::Value::String(v.to_owned()));
        let equals = [compile(filter("level", level("error"), None, None))];
        assert!(passes(&equals, r#"{"level":"error"}"#));
        assert!(!passes(&equals, r#"{"level":"info"}"#));
        assert!(!passes(&equals, r#"{"other":1}"#), "missing field does not equal");

        let not_equals = [compile(filter("level", None, level("debug"), None))];
        assert!(passes(&not_equals, r#"{"level":"error"}"#));
        assert!(!passes(&not_equals, r#"{"level":"debug"}"#));
        assert!(passes(&not_equals, r#"{"other":1}"#), "missing field is not equal");

        let exists = [compile(filter("user", None, None, Some(true)))];
        assert!(passes(&exists, r#"{"user":null}"#), "null counts as present");
        assert!(!passes(&exists, r#"{"other":1}"#));
        let absent = [compile(filter("user", None, None, Some(false)))];
        assert!(passes(&absent, r#"{"other":1}"#));
        assert!(!passes(&absent, r#"{"user":"x"}"#));
    }

    #[test]
    fn filter_numbers_compare_by_value() {
        let three = [compile(filter("n", Some(toml::Value::Integer(3)), None, None))];
        assert!(passes(&three, r#"{"n":3}"#));
        assert!(passes(&three, r#"{"n":3.0}"#));
        assert!(!passes(&three, r#"{"n":3.5}"#));
        assert!(!passes(&three, r#"{"n":"3"}"#), "a string is not a number");
        let three_f = [compile(filter("n", Some(toml::Value::Float(3.0)), None, None))];
        assert!(passes(&three_f, r#"{"n":3}"#));
        let minus = [compile(filter("n", Some(toml::Value::Integer(-1)), None, None))];
        assert!(passes(&minus, r#"{"n":-1}"#));
        assert!(!passes(&minus, r#"{"n":18446744073709551615}"#));
        let yes = [compile(filter("ok", Some(toml::Value::Boolean(true)), None, None))];
        assert!(passes(&yes, r#"{"ok":true}"#));
        assert!(!passes(&yes, r#"{"ok":"true"}"#));
    }

    #[test]
    fn filter_follows_dotted_paths_after_an_exact_name() {
        let steps = [compile(filter("a.b", Some(toml::Value::Integer(1)), None, None))];
        assert!(passes(&steps, r#"{"a":{"b":1}}"#));
        assert!(!passes(&steps, r#"{"a":{"b":2}}"#));
        assert!(!passes(&steps, r#"{"a":1}"#), "a path through a non-object is missing");
        assert!(passes(&steps, r#"{"a.b":1,"a":{"b":2}}"#), "an exact top-level name wins");
        let deep = [compile(filter("x.y.z", None, None, Some(true)))];
        assert!(passes(&deep, r#"{"x":{"y":{"z":null}}}"#));
        assert!(!passes(&deep, r#"{"x":{"y":{}}}"#));
    }

    #[test]
    fn filter_build_errors_name_the_step() {
        let error = |step: StepConfig| JsonStep::compile(2, &step).unwrap_err().to_string();
        assert_eq!(
            error(filter("level", None, None, None)),
            "transform.steps[2] (filter): set exactly one of equals, not_equals, exists; got none"
        );
        assert_eq!(
            error(filter("level", Some(toml::Value::Integer(1)), None, Some(true))),
            "transform.steps[2] (filter): set exactly one of equals, not_equals, exists; got equals, exists"
        );
        assert_eq!(
            error(filter("level", None, Some(toml::Value::Array(vec![])), None)),
            "transform.steps[2] (filter): not_equals: expected a string, integer, finite float or boolean, got [] (array)"
        );
        assert_eq!(
            error(filter("level", Some(toml::Value::Float(f64::NAN)), None, None)),
            "transform.steps[2] (filter): equals: expected a string, integer, finite float or boolean, got nan (float)"
        );
        assert_eq!(
            error(filter("", None, None, Some(true))),
            "transform.steps[2] (filter): field: expected a field name or a dotted path, got \"\""
        );
    }

    #[test]
    fn keep_and_drop_change_the_payload_only_when_a_field_goes() {
        let keep = [compile(StepConfig::Keep { fields: vec!["a".into(), "c".into()] })];
        let edit = edited(&keep, r#"{"a":1,"b":2,"c":3}"#);
        assert_eq!(payload_json(&edit), json!({"a":1,"c":3}));
        assert!(edited(&keep, r#"{"a":1}"#).is_empty(), "nothing removed, nothing rewritten");

        let drop = [compile(StepConfig::Drop { fields: vec!["b".into(), "zz".into()] })];
        let edit = edited(&drop, r#"{"a":1,"b":{"x":2}}"#);
        assert_eq!(payload_json(&edit), json!({"a":1}));
        assert!(edited(&drop, r#"{"a":1}"#).is_empty());
    }

    #[test]
    fn rename_moves_fields_at_once_and_ignores_missing_ones() {
        let rename = |pairs: &[(&str, &str)]| {
            let fields: BTreeMap<String, String> =
                pairs.iter().map(|(o, n)| (o.to_string(), n.to_string())).collect();
            compile(StepConfig::Rename { fields })
        };
        let one = [rename(&[("ts", "timestamp"), ("gone", "still_gone")])];
        assert_eq!(payload_json(&edited(&one, r#"{"ts":5,"a":1}"#)), json!({"timestamp":5,"a":1}));
        assert!(edited(&one, r#"{"a":1}"#).is_empty());

        let swap = [rename(&[("a", "b"), ("b", "a")])];
        assert_eq!(payload_json(&edited(&swap, r#"{"a":1,"b":2}"#)), json!({"a":2,"b":1}));

        let same = [rename(&[("a", "a")])];
        assert!(edited(&same, r#"{"a":1}"#).is_empty(), "renaming to itself is a no-op");
    }

    #[test]
    fn rename_rejects_two_fields_with_one_new_name() {
        let fields: BTreeMap<String, String> =
            [("a", "c"), ("b", "c")].iter().map(|(o, n)| (o.to_string(), n.to_string())).collect();
        let error = JsonStep::compile(3, &StepConfig::Rename { fields }).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"transform.steps[3] (rename): fields: "a" and "b" both rename to "c""#
        );
        assert_eq!(error.step(), 3);
    }

    #[test]
    fn key_from_field_writes_strings_bare_and_other_values_as_json() {
        let key = |field: &str| [compile(StepConfig::KeyFromField { field: field.to_owned() })];
        let user = key("user");
        let edit = edited(&user, r#"{"user":"ann \"a\""}"#);
        assert_eq!(edit.key.as_deref(), Some(&b"ann \"a\""[..]));
        assert_eq!(edit.payload, None, "setting the key does not rewrite the payload");
        assert_eq!(edited(&user, r#"{"user":42}"#).key.as_deref(), Some(&b"42"[..]));
        assert_eq!(
            edited(&user, r#"{"user":{"id":1, "n":[true]}}"#).key.as_deref(),
            Some(&br#"{"id":1,"n":[true]}"#[..])
        );
        assert_eq!(run_on(&user, r#"{"other":1}"#).unwrap_err(), r#"field "user" is missing"#);
        assert_eq!(run_on(&user, r#"{"user":null}"#).unwrap_err(), r#"field "user" is null"#);
        let nested = key("user.id");
        assert_eq!(edited(&nested, r#"{"user":{"id":"u1"}}"#).key.as_deref(), Some(&b"u1"[..]));
    }

    #[test]
    fn identity_and_user_are_not_json_steps() {
        assert!(JsonStep::compile(0, &StepConfig::Identity).unwrap().is_none());
        let user = StepConfig::User { name: "x".into() };
        assert!(JsonStep::compile(0, &user).unwrap().is_none());
    }
}
