//! The compiled `[transform]` steps and how one record goes through them.
//!
//! `build` drops `identity` steps and groups consecutive JSON steps into one stage, so stages
//! alternate between a JSON run (one parse, one serialize) and a `user` transform.
//!
//! Invariants: the record that entered `apply` is never modified, so `Outcome::Rejected` can hand
//! it back untouched; an empty pipeline moves the record through without copying or allocating; a
//! pipeline of JSON steps only never clones the record; each `user` stage costs one clone of the
//! record (cheap while its fields still borrow: a `Vec` of headers when there are any).

use std::fmt;
use std::sync::Arc;

use super::json_steps::{JsonStep, RunResult};
use super::{BuildError, Outcome, StepConfig, Transform, TransformConfig, TransformRegistry};
use crate::record::Record;

/// The configured steps, compiled once and shared (by `Arc`) across concurrently running tasks.
pub struct Pipeline {
    stages: Vec<Stage>,
}

enum Stage {
    /// One or more consecutive JSON steps over a single parse of the payload.
    Json(Vec<JsonStep>),
    User {
        name: String,
        transform: Arc<dyn Transform>,
    },
}

impl Pipeline {
    /// Compiles the configured steps. A `user` step whose name is not in `registry` is an error
    /// naming it and listing the registered names; a malformed built-in step is an error naming
    /// the step and the key.
    pub fn build(
        config: &TransformConfig,
        registry: &TransformRegistry,
    ) -> Result<Pipeline, BuildError> {
        let mut stages = Vec::new();
        let mut json_run = Vec::new();
        for (index, step) in config.steps.iter().enumerate() {
            if let StepConfig::User { name } = step {
                let transform = registry.get(name).ok_or_else(|| BuildError::UnknownTransform {
                    step: index,
                    name: name.clone(),
                    registered: registry.names().map(str::to_owned).collect(),
                })?;
                if !json_run.is_empty() {
                    stages.push(Stage::Json(std::mem::take(&mut json_run)));
                }
                stages.push(Stage::User { name: name.clone(), transform });
            } else if let Some(json_step) = JsonStep::compile(index, step)? {
                json_run.push(json_step);
            }
        }
        if !json_run.is_empty() {
            stages.push(Stage::Json(json_run));
        }
        Ok(Pipeline { stages })
    }

    /// True when records pass through unchanged: no steps, or only `identity` steps.
    pub fn is_identity(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs every step over `record`. Topic, partition, offset, headers and timestamp pass through
    /// unchanged unless a `user` transform changes them.
    pub fn apply<'a>(&self, record: Record<'a>) -> Outcome<'a> {
        // `None` while the record is still the one that came in.
        let mut current: Option<Record<'a>> = None;
        let last = self.stages.len().saturating_sub(1);
        for (index, stage) in self.stages.iter().enumerate() {
            match stage {
                Stage::Json(steps) => {
                    let input = current.as_ref().unwrap_or(&record);
                    let edit = match super::json_steps::run(steps, input.payload.as_deref()) {
                        Ok(RunResult::Pass(edit)) => edit,
                        Ok(RunResult::Filtered) => return Outcome::Filtered,
                        Err(reason) => return Outcome::Rejected { record, reason },
                    };
                    if edit.is_empty() {
                        continue;
                    }
                    if index == last {
                        // Nothing can reject the record any more: edit it in place.
                        let mut output = current.unwrap_or(record);
                        edit.apply_to(&mut output);
                        return Outcome::Emit(output);
                    }
                    edit.apply_to(current.get_or_insert_with(|| record.clone()));
                }
                Stage::User { transform, name } => {
                    let input = current.take().unwrap_or_else(|| record.clone());
                    // A user's transform that panics rejects the record (on_record_error decides
                    // what follows) instead of taking the task's thread down with it.
                    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        transform.apply(input)
                    }));
                    match applied {
                        Ok(Ok(Some(output))) => current = Some(output),
                        Ok(Ok(None)) => return Outcome::Filtered,
                        Ok(Err(reason)) => return Outcome::Rejected { record, reason },
                        Err(panic) => {
                            let reason = format!(
                                "transform {name:?} panicked: {}",
                                crate::failure::panic_message(panic.as_ref())
                            );
                            return Outcome::Rejected { record, reason };
                        }
                    }
                }
            }
        }
        Outcome::Emit(current.unwrap_or(record))
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline").field("stages", &self.stages).finish()
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Json(steps) => f.debug_tuple("Json").field(steps).finish(),
            Stage::User { name, .. } => f.debug_tuple("User").field(name).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::record::Header;

    fn config(toml_steps: &str) -> TransformConfig {
        toml::from_str(toml_steps).expect("valid [transform] TOML")
    }

    fn pipeline(toml_steps: &str) -> Pipeline {
        Pipeline::build(&config(toml_steps), &TransformRegistry::new()).expect("builds")
    }

    /// A record with a key, a header and a timestamp, all borrowed.
    fn record(payload: &'static str) -> Record<'static> {
        Record {
            topic: "events",
            partition: 3,
            offset: 42,
            key: Some(Cow::Borrowed(b"old-key")),
            payload: Some(Cow::Borrowed(payload.as_bytes())),
            headers: vec![Header {
                key: Cow::Borrowed("trace"),
                value: Some(Cow::Borrowed(b"t1")),
            }],
            timestamp_ms: Some(1_700_000_000_000),
        }
    }

    fn emitted(outcome: Outcome<'_>) -> Record<'_> {
        match outcome {
            Outcome::Emit(record) => record,
            other => panic!("expected Emit, got {other:?}"),
        }
    }

    fn payload_json(record: &Record<'_>) -> Value {
        serde_json::from_slice(record.payload.as_deref().expect("a payload")).unwrap()
    }

    fn assert_passthrough_fields(output: &Record<'_>) {
        let input = record("{}");
        assert_eq!(
            (output.topic, output.partition, output.offset),
            (input.topic, input.partition, input.offset)
        );
        assert_eq!(output.headers, input.headers);
        assert_eq!(output.timestamp_ms, input.timestamp_ms);
    }

    struct Upper;
    impl Transform for Upper {
        fn apply<'a>(&self, mut record: Record<'a>) -> Result<Option<Record<'a>>, String> {
            let payload = record.payload.as_mut().ok_or("no payload")?;
            if payload.is_empty() {
                return Ok(None);
            }
            if payload.contains(&b'!') {
                return Err("shouting already".into());
            }
            payload.to_mut().make_ascii_uppercase();
            Ok(Some(record))
        }
    }

    /// Panics on a payload that asks for it, as a buggy user transform would.
    struct Fragile;
    impl Transform for Fragile {
        fn apply<'a>(&self, record: Record<'a>) -> Result<Option<Record<'a>>, String> {
            if record.payload.as_deref() == Some(b"panic") {
                panic!("cannot handle {:?}", "panic");
            }
            Ok(Some(record))
        }
    }

    fn registry() -> TransformRegistry {
        let mut registry = TransformRegistry::new();
        registry.register("upper", Upper);
        registry.register("fragile", Fragile);
        registry
    }

    #[test]
    fn a_panicking_user_transform_rejects_the_record_with_the_panic_message() {
        let steps = r#"steps = [{ type = "user", name = "fragile" }]"#;
        let pipeline = Pipeline::build(&config(steps), &registry()).unwrap();
        let Outcome::Rejected { record: original, reason } = pipeline.apply(record("panic")) else {
            panic!("a panic rejects the record");
        };
        assert_eq!(original, record("panic"), "the record as it came in");
        assert_eq!(reason, r#"transform "fragile" panicked: cannot handle "panic""#);
        assert_eq!(emitted(pipeline.apply(record("fine"))), record("fine"), "the next one passes");
    }

    #[test]
    fn edited_json_keeps_the_order_of_its_fields() {
        let p = pipeline(
            r#"steps = [
                { type = "drop", fields = ["debug"] },
                { type = "rename", fields = { ts = "timestamp" } },
            ]"#,
        );
        let out = emitted(p.apply(record(r#"{"z":1,"ts":5,"debug":"x","a":2}"#)));
        assert_eq!(out.payload.as_deref(), Some(br#"{"z":1,"timestamp":5,"a":2}"#.as_slice()));
    }

    #[test]
    fn pipeline_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Pipeline>();
        assert_send_sync::<Arc<Pipeline>>();
    }

    #[test]
    fn empty_and_identity_pipelines_borrow_the_payload() {
        for steps in ["", r#"steps = [{ type = "identity" }, { type = "identity" }]"#] {
            let pipeline = pipeline(steps);
            assert!(pipeline.is_identity());
            let output = emitted(pipeline.apply(record("not even json")));
            assert!(matches!(output.payload, Some(Cow::Borrowed(_))));
            assert!(matches!(output.key, Some(Cow::Borrowed(_))));
            assert_eq!(output, record("not even json"));
        }
        assert!(!pipeline(r#"steps = [{ type = "parse_json" }]"#).is_identity());
    }

    #[test]
    fn unchanged_json_is_not_reserialized() {
        let pipeline = pipeline(
            r#"steps = [
                { type = "parse_json" },
                { type = "filter", field = "level", equals = "error" },
                { type = "keep", fields = ["level", "msg"] },
            ]"#,
        );
        let input = r#"{ "msg": "disk full",   "level": "error" }"#;
        let output = emitted(pipeline.apply(record(input)));
        assert!(matches!(output.payload, Some(Cow::Borrowed(_))));
        assert_eq!(output, record(input), "the spacing and key order are the input's");
    }

    #[test]
    fn chain_runs_in_one_pass() {
        let pipeline = pipeline(
            r#"steps = [
                { type = "parse_json" },
                { type = "filter", field = "meta.kind", equals = "click" },
                { type = "keep", fields = ["uid", "page", "meta"] },
                { type = "rename", fields = { uid = "user" } },
                { type = "key_from_field", field = "user" },
            ]"#,
        );
        let input = r#"{"uid":"u7","page":"/home","secret":"x","meta":{"kind":"click"}}"#;
        let output = emitted(pipeline.apply(record(input)));
        assert_eq!(output.key.as_deref(), Some(&b"u7"[..]));
        assert_eq!(
            payload_json(&output),
            json!({"user":"u7","page":"/home","meta":{"kind":"click"}})
        );
        assert_passthrough_fields(&output);

        let other = r#"{"uid":"u7","meta":{"kind":"view"}}"#;
        assert_eq!(pipeline.apply(record(other)), Outcome::Filtered);
    }

    #[test]
    fn json_steps_parse_implicitly() {
        let pipeline = pipeline(r#"steps = [{ type = "drop", fields = ["secret"] }]"#);
        let output = emitted(pipeline.apply(record(r#"{"a":1,"secret":2}"#)));
        assert_eq!(payload_json(&output), json!({"a":1}));
        let Outcome::Rejected { reason, .. } = pipeline.apply(record("[1, 2]")) else {
            panic!("an array is rejected without an explicit parse_json");
        };
        assert_eq!(reason, "payload is a JSON array, not an object");
    }

    #[test]
    fn rejection_returns_the_untouched_original() {
        let pipeline = Pipeline::build(
            &config(
                r#"steps = [
                    { type = "drop", fields = ["a"] },
                    { type = "user", name = "upper" },
                    { type = "key_from_field", field = "user" },
                ]"#,
            ),
            &registry(),
        )
        .unwrap();
        // Rejected by the last JSON run, after the first run and the user transform changed it.
        let input = r#"{"a":1,"b":"x"}"#;
        assert_eq!(
            pipeline.apply(record(input)),
            Outcome::Rejected {
                record: record(input),
                reason: r#"field "user" is missing"#.into()
            }
        );
        // Rejected by the user transform.
        let bang = r#"{"a":1,"b":"!"}"#;
        let Outcome::Rejected { record: original, reason } = pipeline.apply(record(bang)) else {
            panic!("the user transform rejects a bang");
        };
        assert_eq!((original, reason.as_str()), (record(bang), "shouting already"));
        // Rejected by the first JSON run (not JSON at all): borrowed, as it came in.
        let Outcome::Rejected { record: original, reason } = pipeline.apply(record("nope")) else {
            panic!("not JSON is rejected");
        };
        assert_eq!(reason, "payload is not valid JSON: expected ident at line 1 column 2");
        assert!(matches!(original.payload, Some(Cow::Borrowed(_))));
        assert_eq!(original, record("nope"));

        let mut tombstone = record("");
        tombstone.payload = None;
        let Outcome::Rejected { record: original, reason } = pipeline.apply(tombstone.clone())
        else {
            panic!("a tombstone is rejected");
        };
        assert_eq!((original, reason.as_str()), (tombstone, "record has no payload"));
    }

    #[test]
    fn user_transform_sees_bytes_between_json_runs() {
        let pipeline = Pipeline::build(
            &config(
                r#"steps = [
                    { type = "rename", fields = { name = "who" } },
                    { type = "user", name = "upper" },
                    { type = "key_from_field", field = "WHO" },
                ]"#,
            ),
            &registry(),
        )
        .unwrap();
        let output = emitted(pipeline.apply(record(r#"{"name":"ann"}"#)));
        assert_eq!(output.payload.as_deref(), Some(&br#"{"WHO":"ANN"}"#[..]));
        assert_eq!(output.key.as_deref(), Some(&b"ANN"[..]));
        assert_passthrough_fields(&output);

        let only_user =
            Pipeline::build(&config(r#"steps = [{ type = "user", name = "upper" }]"#), &registry())
                .unwrap();
        assert!(!only_user.is_identity());
        assert_eq!(emitted(only_user.apply(record("abc"))).payload.as_deref(), Some(&b"ABC"[..]));
        assert_eq!(only_user.apply(record("")), Outcome::Filtered);
    }

    #[test]
    fn user_transform_must_be_registered() {
        let steps = r#"steps = [{ type = "parse_json" }, { type = "identity" }, { type = "user", name = "lower" }]"#;
        let error = Pipeline::build(&config(steps), &TransformRegistry::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"transform.steps[2] (user): no transform registered as "lower"; registered: none"#
        );
        let mut registry = registry();
        registry.register("trim", Upper);
        let error = Pipeline::build(&config(steps), &registry).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"transform.steps[2] (user): no transform registered as "lower"; registered: "fragile", "trim", "upper""#
        );
    }

    #[test]
    fn build_errors_name_the_step() {
        let error = |steps: &str| {
            Pipeline::build(&config(steps), &TransformRegistry::new()).unwrap_err().to_string()
        };
        assert_eq!(
            error(
                r#"steps = [{ type = "parse_json" }, { type = "filter", field = "a", equals = 1, not_equals = 2 }]"#
            ),
            "transform.steps[1] (filter): set exactly one of equals, not_equals, exists; got equals, not_equals"
        );
        assert_eq!(
            error(r#"steps = [{ type = "filter", field = "a" }]"#),
            "transform.steps[0] (filter): set exactly one of equals, not_equals, exists; got none"
        );
        assert_eq!(
            error(r#"steps = [{ type = "filter", field = "at", equals = 2024-01-01 }]"#),
            "transform.steps[0] (filter): equals: expected a string, integer, finite float or boolean, got 2024-01-01 (datetime)"
        );
        let mut fields = BTreeMap::new();
        fields.insert("a".to_owned(), "z".to_owned());
        fields.insert("b".to_owned(), "z".to_owned());
        let config = TransformConfig {
            steps: vec![StepConfig::Identity, StepConfig::Rename { fields }],
            ..TransformConfig::default()
        };
        let error = Pipeline::build(&config, &TransformRegistry::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"transform.steps[1] (rename): fields: "a" and "b" both rename to "z""#
        );
    }

    #[test]
    fn numeric_filter_matches_integer_and_float() {
        let pipeline = pipeline(r#"steps = [{ type = "filter", field = "n", equals = 3 }]"#);
        assert!(matches!(pipeline.apply(record(r#"{"n":3}"#)), Outcome::Emit(_)));
        assert!(matches!(pipeline.apply(record(r#"{"n":3.0}"#)), Outcome::Emit(_)));
        assert_eq!(pipeline.apply(record(r#"{"n":4}"#)), Outcome::Filtered);
    }
}
