//! Declarative policies: which experiments they steer, what evidence and
//! checks judge the shadow, how sampling ramps and when the end time moves.

mod load;
mod model;
mod select;

pub use load::{builtin_policies, load_path, parse_policy, PolicyError, PolicyProblem};

/// The JSON Schema of a policy file, generated from the types the loader
/// reads, for editors that complete and check YAML. Validation beyond
/// shape and names (steps increasing, limits usable, ...) stays the
/// loader's.
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(model::PolicyDoc))
        .unwrap_or(serde_json::Value::Null);
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), "shadowpilot policy".into());
    }
    schema
}
pub use model::*;
pub use select::{select_policy, PolicySet, Selection};
