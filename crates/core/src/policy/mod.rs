//! Declarative policies: which experiments they steer, what evidence and
//! checks judge the shadow, how sampling ramps and when the end time moves.

mod load;
mod model;
mod select;

pub use load::{builtin_policies, load_path, parse_policy, PolicyError, PolicyProblem};
pub use model::*;
pub use select::{select_policy, PolicySet, Selection};
