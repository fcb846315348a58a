//! The JSON report: the result exactly as serde serializes it, pretty-printed. This is the
//! format scripts, `merge` and `report` read back, described by `schema/result.schema.json`.

use super::Exporter;
use crate::analysis::result::RunResult;
use std::io;

/// Writes the result as pretty JSON with a trailing newline.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, result: &RunResult) -> io::Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(result)?;
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use serde_json::Value;

    const SCHEMA: &str = include_str!("../../schema/result.schema.json");

    fn schema() -> Value {
        serde_json::from_str(SCHEMA).unwrap()
    }

    fn exported(r: &RunResult) -> Value {
        let bytes = JsonExporter.export(r).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn errors(schema: &Value, v: &Value) -> Vec<String> {
        let validator = jsonschema::validator_for(schema).unwrap();
        validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }

    #[test]
    fn round_trips() {
        for r in [fixture::failing(), fixture::with_trend()] {
            let back: RunResult = serde_json::from_value(exported(&r)).unwrap();
            assert_eq!(back, r);
        }
    }

    /// Results written before filters, shards and trends existed still read back.
    #[test]
    fn results_without_the_newer_fields_still_read() {
        let mut v = exported(&fixture::failing());
        assert!(v.get("trend").is_none() && v["run"].get("filters").is_none());
        v["run"].as_object_mut().unwrap().remove("shard");
        let back: RunResult = serde_json::from_value(v).unwrap();
        assert!(back.trend.is_none() && back.run.filters.is_empty() && back.run.shard.is_none());
    }

    #[test]
    fn output_matches_the_schema() {
        for r in [
            fixture::failing(),
            fixture::passing(),
            fixture::with_trend(),
        ] {
            let errs = errors(&schema(), &exported(&r));
            assert!(errs.is_empty(), "{errs:#?}");
        }
    }

    #[test]
    fn schema_rejects_broken_results() {
        let s = schema();
        let good = exported(&fixture::failing());
        type Breakage = (&'static str, fn(&mut Value));
        let breakages: [Breakage; 6] = [
            ("no verdict", |v| {
                v.as_object_mut().unwrap().remove("verdict");
            }),
            ("unknown verdict", |v| v["verdict"] = "maybe".into()),
            ("negative count", |v| {
                v["summary"]["different"] = (-1).into()
            }),
            ("count as string", |v| {
                v["interfaces"][0]["total"] = "1".into()
            }),
            ("example without candidate", |v| {
                v["interfaces"][1]["fields"][0]["example"]
                    .as_object_mut()
                    .unwrap()
                    .remove("candidate");
            }),
            ("unknown error kind", |v| {
                v["interfaces"][2]["errors"][0]["kind"] = "gremlins".into()
            }),
        ];
        for (what, breakage) in breakages {
            let mut v = good.clone();
            breakage(&mut v);
            assert!(!errors(&s, &v).is_empty(), "schema accepted: {what}");
        }
    }

    /// The schema leaves objects open so the format can grow; this closes every object it
    /// describes (except the flattened counts, which are only ever part of a bigger object)
    /// to prove it names every field serde writes, no more and no fewer.
    #[test]
    fn schema_names_every_serialized_field() {
        fn close(v: &mut Value) {
            if let Some(o) = v.as_object_mut() {
                if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                    o.insert("unevaluatedProperties".into(), false.into());
                }
                for (_, child) in o.iter_mut() {
                    close(child);
                }
            } else if let Some(a) = v.as_array_mut() {
                a.iter_mut().for_each(close);
            }
        }
        let mut s = schema();
        let counts = s["$defs"]["counts"].clone();
        close(&mut s);
        s["$defs"]["counts"] = counts;
        for r in [
            fixture::failing(),
            fixture::passing(),
            fixture::with_trend(),
        ] {
            let v = exported(&r);
            let errs = errors(&s, &v);
            assert!(errs.is_empty(), "{errs:#?}");
            let mut extra = v.clone();
            extra["run"]["surprise"] = true.into();
            assert!(!errors(&s, &extra).is_empty());
        }
    }
}
