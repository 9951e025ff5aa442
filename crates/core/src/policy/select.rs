use globset::{Glob, GlobSet, GlobSetBuilder};

use super::load::PolicyProblem;
use super::model::LoadedPolicy;
use crate::experiment::{Experiment, POLICY_TAG};

/// Loaded policies with their selectors compiled.
#[derive(Debug, Clone)]
pub struct PolicySet {
    policies: Vec<LoadedPolicy>,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
struct Matcher {
    experiments: Option<GlobSet>,
    endpoints: Option<GlobSet>,
}

fn compile(globs: &[String]) -> Result<Option<GlobSet>, globset::Error> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob)?);
    }
    builder.build().map(Some)
}

impl PolicySet {
    pub fn new(policies: Vec<LoadedPolicy>) -> Result<Self, Vec<PolicyProblem>> {
        let mut matchers = Vec::new();
        let mut problems = Vec::new();
        for policy in &policies {
            let select = &policy.policy.select;
            match (compile(&select.experiments), compile(&select.endpoints)) {
                (Ok(experiments), Ok(endpoints)) => matchers.push(Matcher {
                    experiments,
                    endpoints,
                }),
                (Err(error), _) | (_, Err(error)) => problems.push(PolicyProblem {
                    source: policy.source.clone(),
                    field: "select".into(),
                    message: error.to_string(),
                }),
            }
        }
        if problems.is_empty() {
            Ok(Self { policies, matchers })
        } else {
            Err(problems)
        }
    }

    pub fn policies(&self) -> &[LoadedPolicy] {
        &self.policies
    }

    pub fn get(&self, name: &str) -> Option<&LoadedPolicy> {
        self.policies.iter().find(|p| p.name() == name)
    }
}

/// Why an experiment is, or is not, steered by a policy.
#[derive(Debug, Clone)]
pub enum Selection<'a> {
    Selected {
        policy: &'a LoadedPolicy,
        via: String,
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
    let mut matched: Vec<(&LoadedPolicy, String)> = Vec::new();
    if let Some(tagged) = experiment.policy_tag() {
        match set.get(tagged) {
            Some(policy) => matched.push((policy, format!("tag {POLICY_TAG}={tagged}"))),
            None => {
                return Selection::UnknownPolicy {
                    name: tagged.to_string(),
                }
            }
        }
    }
    for (policy, matcher) in set.policies.iter().zip(&set.matchers) {
        if matcher.experiments.is_none() && matcher.endpoints.is_none() {
            continue;
        }
        let name_ok = matcher
            .experiments
            .as_ref()
            .is_none_or(|globs| globs.is_match(&experiment.name));
        let endpoint_ok = matcher
            .endpoints
            .as_ref()
            .is_none_or(|globs| globs.is_match(&experiment.endpoint_name));
        if name_ok && endpoint_ok && !matched.iter().any(|(p, _)| p.name() == policy.name()) {
            matched.push((policy, "name/endpoint globs".to_string()));
        }
    }
    match matched.len() {
        0 => Selection::NotSelected,
        1 => {
            let (policy, via) = matched.remove(0);
            Selection::Selected { policy, via }
        }
        _ => Selection::Ambiguous {
            policies: matched.iter().map(|(p, _)| p.name().to_string()).collect(),
        },
    }
}
