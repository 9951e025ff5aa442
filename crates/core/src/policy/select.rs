//! Which policy steers an experiment: its `shadowpilot:policy` tag, or the
//! name and endpoint globs of a policy.

use super::model::Policy;
use crate::experiment::Experiment;
use crate::validation::Problem;

/// The loaded policies, names unique.
#[derive(Debug, Clone)]
pub struct PolicySet {
    policies: Vec<Policy>,
}

impl PolicySet {
    /// Refuses two policies of one name: the tag could not tell them apart.
    pub fn new(policies: Vec<Policy>) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        for (index, policy) in policies.iter().enumerate() {
            if let Some(first) = policies[..index].iter().find(|p| p.name == policy.name) {
                problems.push(Problem {
                    source: policy.source.clone(),
                    field: "name".into(),
                    message: format!(
                        "{:?} is already the name of the policy in {}",
                        policy.name, first.source
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(Self { policies })
        } else {
            Err(problems)
        }
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// How a policy came to select an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Tag,
    Globs,
}

/// Why an experiment is, or is not, steered by a policy.
#[derive(Debug, Clone)]
pub enum Selection<'a> {
    Selected {
        policy: &'a Policy,
        via: Via,
    },
    NotSelected,
    /// Two or more policies claim it: never written.
    Ambiguous {
        policies: Vec<String>,
    },
    /// The tag names a policy that is not loaded.
    UnknownPolicy {
        name: String,
    },
}

/// The tag `shadowpilot:policy` selects its policy; a policy's globs select
/// when every kind of glob it gives matches (name and endpoint).
pub fn select_policy<'a>(set: &'a PolicySet, experiment: &Experiment) -> Selection<'a> {
    let mut matched: Vec<(&Policy, Via)> = Vec::new();
    if let Some(tagged) = experiment.policy_tag() {
        match set.get(tagged) {
            Some(policy) => matched.push((policy, Via::Tag)),
            None => {
                return Selection::UnknownPolicy {
                    name: tagged.to_string(),
                }
            }
        }
    }
    for policy in &set.policies {
        if policy
            .select
            .matches(&experiment.name, &experiment.endpoint_name)
            && !matched.iter().any(|(p, _)| p.name == policy.name)
        {
            matched.push((policy, Via::Globs));
        }
    }
    match matched.as_slice() {
        [] => Selection::NotSelected,
        [(policy, via)] => Selection::Selected { policy, via: *via },
        _ => Selection::Ambiguous {
            policies: matched.iter().map(|(p, _)| p.name.clone()).collect(),
        },
    }
}
