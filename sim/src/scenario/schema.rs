//! The JSON Schema of scenario files, generated from the scenario types (schemars): the name
//! lists the types cannot say themselves (knobs, failpoints, chaos faults, kinds, windows).

use super::*;

/// A list of strings, each one of `names`.
pub(super) fn list_of(names: &[&str], description: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "type": "array",
        "items": { "type": "string", "enum": names }
    })
}

pub(super) fn knob_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = KnownBug::ALL.iter().map(|b| b.name()).collect();
    list_of(
        &names,
        "Known-bug knobs switched on for every run of this scenario (as `--bug NAME` would).",
    )
}

pub(super) fn failpoint_name(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The failpoint: one the engine models.",
        "type": "string",
        "enum": engine::failpoints::IMPLEMENTED
    })
}

pub(super) fn chaos_fault_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_of(&CHAOS_FAULTS, "The fault kinds it may inject.")
}

pub(super) fn violation_kinds(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.as_str()).collect();
    list_of(&names, "Violation kinds.")
}

pub(super) fn window_minimums(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Race window -> seeds (of `ci_seeds`) that must enter it.",
        "type": "object",
        "propertyNames": { "enum": crate::world::WINDOWS },
        "additionalProperties": { "type": "integer", "minimum": 0 }
    })
}

/// The JSON Schema of a scenario file (`faultline schema`), generated from these types.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).expect("a schema is JSON")
}
