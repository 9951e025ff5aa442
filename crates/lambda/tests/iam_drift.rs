//! The two deployment paths must grant the same permissions and keep the
//! deployment contract: template.yaml (SAM) and policies/iam/*.json (the
//! cargo-lambda path, `cargo lambda deploy --iam-role ...`).
//!
//! template.yaml is read as plain YAML with unknown tags rejected, so it must
//! use the long form of intrinsic functions (`Fn::Sub:`, `Ref:`, `Fn::If:`),
//! never `!Sub`, `!Ref` or `!If`: serde-saphyr would otherwise drop the tag
//! silently and this test would compare the wrong thing.
//!
//! The template's role is compared as CloudFormation would create it: its
//! conditions evaluated and its intrinsics resolved for given parameter
//! values ([`Stack`]). The statements that read data capture exist only
//! with a `CaptureBucket`; the standalone document carries them with
//! placeholders (`<capture-bucket>`, ...) that name nothing that can exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use shadowpilot_core::experiment::TAG_PREFIX;

const TEMPLATE: &str = include_str!("../../../template.yaml");
const POLICY: &str = include_str!("../../../policies/iam/shadowpilot-policy.json");
const TRUST: &str = include_str!("../../../policies/iam/trust-policy.json");

/// The one inline policy of the execution role that must equal POLICY.
const SHARED_POLICY_NAME: &str = "shadowpilot";

/// The calls shadowpilot makes, and nothing else. In particular never
/// Create/Delete/Start; tags are written only under TAG_WRITES's condition,
/// capture read only under the CAPTURE_ACTIONS' scopes.
const ACTIONS: &[&str] = &[
    "sagemaker:ListInferenceExperiments",
    "sagemaker:DescribeInferenceExperiment",
    "sagemaker:ListTags",
    "sagemaker:UpdateInferenceExperiment",
    "sagemaker:StopInferenceExperiment",
    "sagemaker:AddTags",
    "sagemaker:DeleteTags",
    "cloudwatch:GetMetricData",
    "events:PutEvents",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "s3:ListBucket",
    "s3:GetObject",
    "kms:Decrypt",
];

/// The tag writes, allowed only for keys under shadowpilot's prefix.
const TAG_WRITES: &[&str] = &["sagemaker:AddTags", "sagemaker:DeleteTags"];

/// Reading data capture: ListObjectsV2 (s3:ListBucket), GetObject, and
/// kms:Decrypt for SSE-KMS objects. Checked in the capture tests below.
const CAPTURE_ACTIONS: &[&str] = &["s3:ListBucket", "s3:GetObject", "kms:Decrypt"];

/// The statements that grant them, each present only with its parameters.
const CAPTURE_SIDS: &[&str] = &[
    "ListCapture",
    "ReadCapture",
    "DecryptCaptureWithKey",
    "DecryptCaptureByAlias",
];

/// The tag actions have no inference-experiment resource type in the
/// Service Authorization Reference, so they are granted on any SageMaker
/// resource of the account and region (policies/iam/README.md); nothing
/// else may be.
const TAG_ACTIONS: &[&str] = &[
    "sagemaker:ListTags",
    "sagemaker:AddTags",
    "sagemaker:DeleteTags",
];
/// That resource as the template writes it, and as it reads standalone.
const ANY_SAGEMAKER_SUB: &str =
    "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:*";
const ANY_SAGEMAKER: &str = "arn:aws:sagemaker:*:*:*";

/// The condition on every statement that writes tags.
fn tag_keys_condition() -> Value {
    json!({"ForAllValues:StringLike": {"aws:TagKeys": format!("{TAG_PREFIX}*")}})
}

/// Actions without resource-level permissions (Service Authorization
/// Reference): only these may be granted on "*".
const NO_RESOURCE_LEVEL: &[&str] = &[
    "sagemaker:ListInferenceExperiments",
    "cloudwatch:GetMetricData",
];

/// How the template's pseudo parameters read in the standalone document:
/// the document is not tied to one region or account, and it assumes the
/// function (and its log group) is called `shadowpilot`, as in README.md ("Deploying")
/// and samconfig.toml's stack name.
const PSEUDO: &[(&str, &str)] = &[
    ("AWS::Partition", "aws"),
    ("AWS::Region", "*"),
    ("AWS::AccountId", "*"),
    ("AWS::StackName", "shadowpilot"),
];

/// Inside a statement's Condition the document cannot say "any region":
/// `kms:ViaService` is compared with StringEquals, where `*` is a plain
/// character. There the region is a placeholder to fill in.
const PSEUDO_IN_CONDITIONS: &[(&str, &str)] = &[("AWS::Region", "<region>")];

/// The capture parameters as the standalone document writes them. No S3
/// bucket, key prefix segment, KMS key id or alias can contain `<`, so an
/// unedited document grants nothing real. (The template's AllowedPatterns
/// refuse these values; the test renders, it does not deploy.)
const STANDALONE_CAPTURE: &[(&str, &str)] = &[
    ("CaptureBucket", "<capture-bucket>"),
    ("CapturePrefix", "<capture-prefix>"),
];
/// The document carries both KMS forms; the template grants one of them,
/// by the form of CaptureKmsKey.
const STANDALONE_KMS_KEYS: &[&str] = &[
    "arn:aws:kms:*:*:key/<capture-key-id>",
    "alias/<capture-key-alias>",
];

/// A deployed stack's own pseudo parameters, for the capture tests.
const DEPLOYED: &[(&str, &str)] = &[
    ("AWS::Partition", "aws"),
    ("AWS::Region", "eu-west-1"),
    ("AWS::AccountId", "123456789012"),
    ("AWS::StackName", "shadowpilot"),
];
const KEY_ARN: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// The shortest schedule period the `Schedule` parameter's AllowedPattern
/// admits (rate(3 minutes); a cron minute step of 3). .ci/deploy-checks tests
/// the pattern itself.
const MIN_PERIOD_SECS: u64 = 180;

fn template() -> Value {
    let options = serde_saphyr::options! { reject_unsupported_tags: true };
    serde_saphyr::from_str_with_options(TEMPLATE, options)
        .expect("template.yaml must parse as plain YAML: write intrinsics as `Fn::Sub:`/`Ref:`/`Fn::If:`, not `!Sub`/`!Ref`/`!If`")
}

fn json_doc(name: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn resource<'a>(template: &'a Value, logical_id: &str) -> &'a Value {
    template
        .pointer(&format!("/Resources/{logical_id}"))
        .unwrap_or_else(|| panic!("template.yaml: no resource {logical_id}"))
}

fn function(template: &Value) -> &Value {
    let f = resource(template, "ShadowpilotFunction");
    assert_eq!(f["Type"], "AWS::Serverless::Function");
    &f["Properties"]
}

fn role_policies(template: &Value) -> BTreeMap<String, Value> {
    let role = resource(template, "ExecutionRole");
    assert_eq!(role["Type"], "AWS::IAM::Role");
    role["Properties"]["Policies"]
        .as_array()
        .expect("ExecutionRole.Policies is a list")
        .iter()
        .map(|p| {
            let name = p["PolicyName"]
                .as_str()
                .expect("PolicyName is a string")
                .to_string();
            (name, p["PolicyDocument"].clone())
        })
        .collect()
}

/// The shared policy's statements as written: a statement under
/// `Fn::If: [condition, statement, Ref: AWS::NoValue]` is returned as its
/// statement, with the condition's name.
fn written_statements(template: &Value) -> Vec<(Option<String>, Value)> {
    role_policies(template)[SHARED_POLICY_NAME]["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .map(|s| match s.get("Fn::If").and_then(Value::as_array) {
            Some(branches) => {
                assert_eq!(
                    branches.get(2),
                    Some(&json!({"Ref": "AWS::NoValue"})),
                    "a conditional statement is there or absent: {s}"
                );
                let condition = branches[0].as_str().expect("a condition name");
                (Some(condition.to_string()), branches[1].clone())
            }
            None => (None, s.clone()),
        })
        .collect()
}

// ------------------------------------------------- the template, rendered

/// The values a template is rendered with, as CloudFormation would create
/// the stack: parameters (Defaults, then overrides) and pseudo parameters.
struct Stack<'a> {
    template: &'a Value,
    params: BTreeMap<String, String>,
    pseudo: &'a [(&'a str, &'a str)],
    pseudo_in_conditions: &'a [(&'a str, &'a str)],
}

impl<'a> Stack<'a> {
    /// Parameters at their defaults, pseudo parameters as the standalone
    /// document writes them.
    fn standalone(template: &'a Value) -> Self {
        let params = template["Parameters"]
            .as_object()
            .expect("Parameters")
            .iter()
            .map(|(name, p)| {
                let default = match &p["Default"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("parameter {name}: Default {other}"),
                };
                (name.clone(), default)
            })
            .collect();
        Self {
            template,
            params,
            pseudo: PSEUDO,
            pseudo_in_conditions: PSEUDO_IN_CONDITIONS,
        }
    }

    /// The capture statements with the standalone document's placeholders.
    fn standalone_capture(template: &'a Value, kms_key: &str) -> Self {
        let mut stack = Self::standalone(template);
        for (name, value) in STANDALONE_CAPTURE {
            stack = stack.with(name, value);
        }
        stack.with("CaptureKmsKey", kms_key)
    }

    /// A stack deployed in DEPLOYED's region and account.
    fn deployed(template: &'a Value) -> Self {
        Self {
            pseudo: DEPLOYED,
            pseudo_in_conditions: &[],
            ..Self::standalone(template)
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        assert!(
            self.params.contains_key(name),
            "template.yaml has no parameter {name}"
        );
        self.params.insert(name.to_string(), value.to_string());
        self
    }

    /// A parameter's or pseudo parameter's value. Anything else is an
    /// error, so a new variable needs a decision here.
    fn lookup(&self, name: &str, in_condition: bool) -> Result<String, String> {
        let find = |table: &[(&str, &str)]| {
            table
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        in_condition
            .then(|| find(self.pseudo_in_conditions))
            .flatten()
            .or_else(|| find(self.pseudo))
            .or_else(|| self.params.get(name).cloned())
            .ok_or_else(|| format!("no value for ${{{name}}}"))
    }

    fn sub(&self, text: &str, in_condition: bool) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?
                + start;
            out.push_str(&self.lookup(&rest[start + 2..end], in_condition)?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// One of the template's Conditions.
    fn condition(&self, name: &str) -> Result<bool, String> {
        let expression = self
            .template
            .pointer(&format!("/Conditions/{name}"))
            .ok_or_else(|| format!("no condition {name}"))?;
        self.truth(expression)
            .map_err(|e| format!("condition {name}: {e}"))
    }

    /// A condition function: Fn::Equals, Fn::Not, Fn::And, Fn::Or and
    /// references to other conditions.
    fn truth(&self, expression: &Value) -> Result<bool, String> {
        let (function, argument) = single(expression)?;
        let list = || {
            argument
                .as_array()
                .ok_or_else(|| format!("{function} takes a list"))
        };
        match function {
            "Fn::Equals" => match list()?.as_slice() {
                [a, b] => Ok(self.scalar(a)? == self.scalar(b)?),
                _ => Err("Fn::Equals takes two values".into()),
            },
            "Fn::Not" => match list()?.as_slice() {
                [c] => Ok(!self.truth(c)?),
                _ => Err("Fn::Not takes one condition".into()),
            },
            "Fn::And" => list()?
                .iter()
                .try_fold(true, |all, c| Ok(all & self.truth(c)?)),
            "Fn::Or" => list()?
                .iter()
                .try_fold(false, |any, c| Ok(any | self.truth(c)?)),
            "Condition" => self.condition(argument.as_str().ok_or("Condition takes a name")?),
            other => Err(format!("unsupported condition function {other}")),
        }
    }

    /// A string inside a condition: a literal, a Ref, or Fn::Select over
    /// Fn::Split (with Rust's split, which agrees with CloudFormation's on
    /// the first element, the only one the template selects).
    fn scalar(&self, value: &Value) -> Result<String, String> {
        if let Value::String(s) = value {
            return Ok(s.clone());
        }
        let (function, argument) = single(value)?;
        match (function, argument) {
            ("Ref", Value::String(name)) => self.lookup(name, false),
            ("Fn::Select", Value::Array(args)) if args.len() == 2 => {
                let index = match &args[0] {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                }
                .ok_or("Fn::Select index")?;
                let (split, split_args) = single(&args[1])?;
                let [separator, text] = split_args.as_array().map(Vec::as_slice).unwrap_or(&[])
                else {
                    return Err("Fn::Split takes a separator and a string".into());
                };
                if split != "Fn::Split" {
                    return Err(format!("Fn::Select over {split}"));
                }
                let separator = separator.as_str().ok_or("Fn::Split separator")?;
                let text = self.scalar(text)?;
                text.split(separator)
                    .nth(index as usize)
                    .map(str::to_string)
                    .ok_or_else(|| format!("Fn::Select {index} out of range of {text:?}"))
            }
            (other, _) => Err(format!("unsupported value {other} in a condition")),
        }
    }

    /// A value as CloudFormation passes it to IAM: Fn::If decided, Ref and
    /// Fn::Sub resolved, AWS::NoValue removed (`None`). Any other intrinsic
    /// is an error.
    fn render(&self, value: &Value, in_condition: bool) -> Result<Option<Value>, String> {
        match value {
            Value::Object(map)
                if map.len() == 1 && map.keys().all(|k| k == "Ref" || k.starts_with("Fn::")) =>
            {
                let (function, argument) = single(value)?;
                match (function, argument) {
                    ("Ref", Value::String(name)) if name == "AWS::NoValue" => Ok(None),
                    ("Ref", Value::String(name)) => {
                        Ok(Some(Value::String(self.lookup(name, in_condition)?)))
                    }
                    ("Fn::Sub", Value::String(text)) => {
                        Ok(Some(Value::String(self.sub(text, in_condition)?)))
                    }
                    ("Fn::If", Value::Array(args)) if args.len() == 3 => {
                        let name = args[0].as_str().ok_or("Fn::If takes a condition name")?;
                        let branch = if self.condition(name)? {
                            &args[1]
                        } else {
                            &args[2]
                        };
                        self.render(branch, in_condition)
                    }
                    (other, _) => Err(format!("unsupported intrinsic {other}")),
                }
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, v) in map {
                    if let Some(v) = self.render(v, in_condition || key == "Condition")? {
                        out.insert(key.clone(), v);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for v in items {
                    out.extend(self.render(v, in_condition)?);
                }
                Ok(Some(Value::Array(out)))
            }
            plain => Ok(Some(plain.clone())),
        }
    }

    fn render_text(&self, value: &Value) -> String {
        match self.render(value, false) {
            Ok(Some(Value::String(s))) => s,
            other => panic!("{value} does not render to a string: {other:?}"),
        }
    }
}

/// The one key and its argument of an intrinsic function.
fn single(value: &Value) -> Result<(&str, &Value), String> {
    match value.as_object() {
        Some(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().expect("one entry");
            Ok((k.as_str(), v))
        }
        _ => Err(format!("expected a function, got {value}")),
    }
}

fn string_set(value: &Value, what: &str) -> Result<BTreeSet<String>, String> {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{what}: {v} is not a string"))
    };
    match value {
        Value::Array(items) => items.iter().map(text).collect(),
        Value::Null => Err(format!("{what} is missing")),
        single => Ok(BTreeSet::from([text(single)?])),
    }
}

/// A statement reduced to what it grants, keyed by Sid.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    effect: String,
    actions: BTreeSet<String>,
    resources: BTreeSet<String>,
    condition: Value,
}

/// The grants of a policy document without intrinsics (rendered, or JSON).
fn grants(policy: &Value, what: &str) -> BTreeMap<String, Grant> {
    assert_eq!(policy["Version"], "2012-10-17", "{what}: Version");
    let statements = policy["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: Statement is a list"));
    let mut out = BTreeMap::new();
    for (i, s) in statements.iter().enumerate() {
        let at = format!("{what}: Statement[{i}]");
        let sid = s["Sid"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: every statement needs a Sid"));
        for forbidden in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
            assert!(
                s.get(forbidden).is_none(),
                "{at} ({sid}): {forbidden} is not allowed"
            );
        }
        let grant = Grant {
            effect: s["Effect"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: Effect"))
                .to_string(),
            actions: string_set(&s["Action"], "Action")
                .unwrap_or_else(|e| panic!("{at} ({sid}): {e}")),
            resources: string_set(&s["Resource"], "Resource")
                .unwrap_or_else(|e| panic!("{at} ({sid}): {e}")),
            condition: s.get("Condition").cloned().unwrap_or(Value::Null),
        };
        assert!(
            out.insert(sid.to_string(), grant).is_none(),
            "{at}: Sid {sid} is not unique"
        );
    }
    out
}

/// The shared inline policy as `stack` would create it.
fn template_grants(stack: &Stack) -> BTreeMap<String, Grant> {
    let policies = role_policies(stack.template);
    let shared = policies
        .get(SHARED_POLICY_NAME)
        .unwrap_or_else(|| panic!("ExecutionRole has no inline policy {SHARED_POLICY_NAME:?}"));
    let rendered = stack
        .render(shared, false)
        .unwrap_or_else(|e| panic!("template.yaml ExecutionRole: {e}"))
        .expect("the policy is there");
    grants(&rendered, "template.yaml ExecutionRole")
}

fn document_grants() -> BTreeMap<String, Grant> {
    let doc = json_doc("shadowpilot-policy.json", POLICY);
    grants(&doc, "policies/iam/shadowpilot-policy.json")
}

fn without_capture(grants: &BTreeMap<String, Grant>) -> BTreeMap<String, Grant> {
    grants
        .iter()
        .filter(|(sid, _)| !CAPTURE_SIDS.contains(&sid.as_str()))
        .map(|(sid, g)| (sid.clone(), g.clone()))
        .collect()
}

// ------------------------------------------- what IAM would make of them

/// IAM's wildcard match (`*` any run of characters, `?` one), the way
/// ARNs in Resource and StringLike values match.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic backtracking over the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// One request: action, resource and its context keys (multi-valued,
/// like kms:ResourceAliases; a key absent from the request is absent).
struct Request {
    action: &'static str,
    resource: String,
    context: Vec<(&'static str, Vec<String>)>,
}

/// Whether an Allow among `grants` matches the request, with IAM's rules
/// for the operators these policies use: every operator and key of a
/// Condition must hold; a key absent from the request fails StringLike,
/// StringEquals and ForAnyValue; a listed value matches if any does.
/// Anything else in a Condition panics, so a new operator needs a decision.
fn allowed(grants: &BTreeMap<String, Grant>, request: &Request) -> bool {
    grants.values().any(|g| {
        g.effect == "Allow"
            && g.actions.contains(request.action)
            && g.resources.iter().any(|r| wildcard(r, &request.resource))
            && condition_holds(&g.condition, request)
    })
}

fn condition_holds(condition: &Value, request: &Request) -> bool {
    let Some(operators) = condition.as_object() else {
        assert_eq!(condition, &Value::Null, "a Condition is an object");
        return true;
    };
    operators.iter().all(|(operator, keys)| {
        let matches: fn(&str, &str) -> bool = match operator.as_str() {
            "StringLike" | "ForAnyValue:StringLike" => wildcard,
            "StringEquals" | "ForAnyValue:StringEquals" => |a, b| a == b,
            other => panic!("condition operator {other} is not modelled here"),
        };
        keys.as_object().expect("keys").iter().all(|(key, wanted)| {
            let wanted = string_set(wanted, key).expect("condition values");
            let present = request
                .context
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, values)| values.as_slice())
                .unwrap_or(&[]);
            // Single-valued operators and ForAnyValue both need one request
            // value that matches one listed value.
            present
                .iter()
                .any(|value| wanted.iter().any(|w| matches(w, value)))
        })
    })
}

fn list_bucket(bucket: &str, prefix: Option<&str>) -> Request {
    Request {
        action: "s3:ListBucket",
        resource: format!("arn:aws:s3:::{bucket}"),
        context: prefix
            .map(|p| vec![("s3:prefix", vec![p.to_string()])])
            .unwrap_or_default(),
    }
}

fn get_object(bucket: &str, key: &str) -> Request {
    Request {
        action: "s3:GetObject",
        resource: format!("arn:aws:s3:::{bucket}/{key}"),
        context: vec![],
    }
}

fn decrypt(key_arn: &str, via: Option<&str>, aliases: &[&str]) -> Request {
    let mut context = vec![(
        "kms:ResourceAliases",
        aliases.iter().map(|a| a.to_string()).collect(),
    )];
    if let Some(via) = via {
        context.push(("kms:ViaService", vec![via.to_string()]));
    }
    Request {
        action: "kms:Decrypt",
        resource: key_arn.to_string(),
        context,
    }
}

/// The template's role, rendered with the document's placeholders once for
/// each KMS form, grants what the document grants, statement by statement;
/// a statement present in several renderings is the same in each.
#[test]
fn template_role_and_standalone_policy_grant_the_same() {
    let template = template();
    let mut problems = Vec::new();
    let mut in_template: BTreeMap<String, Grant> = BTreeMap::new();
    for kms_key in STANDALONE_KMS_KEYS {
        let stack = Stack::standalone_capture(&template, kms_key);
        for (sid, grant) in template_grants(&stack) {
            match in_template.get(&sid) {
                Some(seen) if *seen != grant => problems.push(format!(
                    "{sid}: differs with CaptureKmsKey={kms_key}:\n  {grant:?}\n  {seen:?}"
                )),
                Some(_) => {}
                None => {
                    in_template.insert(sid, grant);
                }
            }
        }
    }
    let in_document = document_grants();

    for (sid, grant) in &in_template {
        match in_document.get(sid) {
            None => problems.push(format!("{sid}: in template.yaml only")),
            Some(other) if other != grant => problems.push(format!(
                "{sid}:\n  template.yaml: {grant:?}\n  policies/iam:  {other:?}"
            )),
            Some(_) => {}
        }
    }
    for sid in in_document
        .keys()
        .filter(|sid| !in_template.contains_key(*sid))
    {
        problems.push(format!(
            "{sid}: in policies/iam/shadowpilot-policy.json only"
        ));
    }
    assert!(
        problems.is_empty(),
        "template.yaml and policies/iam/shadowpilot-policy.json drifted apart:\n{}",
        problems.join("\n")
    );
}

#[test]
fn grants_exactly_the_calls_shadowpilot_makes() {
    let granted: BTreeSet<String> = document_grants()
        .values()
        .flat_map(|g| g.actions.iter().cloned())
        .collect();
    let expected: BTreeSet<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(granted, expected);
    for g in document_grants().values() {
        assert_eq!(g.effect, "Allow");
        assert!(
            g.actions.iter().all(|a| !a.contains('*')),
            "no action wildcards: {g:?}"
        );
        // Only the tag writes and the capture reads carry a condition,
        // checked in tag_writes_are_limited_to_shadowpilot_keys and the
        // capture tests.
        if g.actions
            .iter()
            .all(|a| !TAG_WRITES.contains(&a.as_str()) && !CAPTURE_ACTIONS.contains(&a.as_str()))
        {
            assert_eq!(g.condition, Value::Null, "{g:?}");
        }
    }
    // The end of the test is scoped exactly like the updates: the same
    // statement, the same inference-experiment resource.
    let steering: Vec<_> = document_grants()
        .into_values()
        .filter(|g| {
            g.actions
                .iter()
                .any(|a| a == "sagemaker:StopInferenceExperiment")
        })
        .collect();
    assert_eq!(steering.len(), 1, "{steering:?}");
    assert!(steering[0]
        .actions
        .contains("sagemaker:UpdateInferenceExperiment"));
    assert!(
        !granted
            .iter()
            .any(|a| a.contains("Endpoint") || (a.ends_with("InferenceExperiment") && !a.contains("Update") && !a.contains("Stop") && !a.contains("Describe"))),
        "shadowpilot never starts, creates or deletes an experiment, nor touches an endpoint itself"
    );
}

#[test]
fn star_resources_only_where_iam_offers_nothing_narrower() {
    for (sid, g) in document_grants() {
        for r in &g.resources {
            if r == "*" {
                let narrowable: Vec<_> = g
                    .actions
                    .iter()
                    .filter(|a| !NO_RESOURCE_LEVEL.contains(&a.as_str()))
                    .collect();
                assert!(
                    narrowable.is_empty(),
                    "{sid}: {narrowable:?} support resource-level permissions, not \"*\""
                );
            } else {
                assert!(r.starts_with("arn:aws:"), "{sid}: {r} is an ARN");
            }
        }
    }
    let update = &document_grants()["UpdateInferenceExperiments"];
    assert_eq!(
        update.resources,
        BTreeSet::from(["arn:aws:sagemaker:*:*:inference-experiment/*".to_string()])
    );
}

/// In both documents (the template's own too, not only through the
/// comparison above): AddTags and DeleteTags only with the aws:TagKeys
/// condition, ListTags without one, all three on any SageMaker resource of
/// the account and region, and that wide resource for nothing else.
#[test]
fn tag_writes_are_limited_to_shadowpilot_keys() {
    let template = template();
    for (what, grants) in [
        (
            "template.yaml",
            template_grants(&Stack::standalone(&template)),
        ),
        ("policies/iam/shadowpilot-policy.json", document_grants()),
    ] {
        for action in TAG_ACTIONS {
            let granting: Vec<(&String, &Grant)> = grants
                .iter()
                .filter(|(_, g)| g.actions.contains(*action))
                .collect();
            assert_eq!(granting.len(), 1, "{what}: {action} in one statement");
            let (sid, g) = granting[0];
            assert_eq!(
                g.resources,
                BTreeSet::from([ANY_SAGEMAKER.to_string()]),
                "{what}: {sid}"
            );
            let expected = if TAG_WRITES.contains(action) {
                tag_keys_condition()
            } else {
                Value::Null
            };
            assert_eq!(g.condition, expected, "{what}: {sid} ({action})");
        }
        for (sid, g) in &grants {
            if g.resources.contains(ANY_SAGEMAKER) {
                let others: Vec<_> = g
                    .actions
                    .iter()
                    .filter(|a| !TAG_ACTIONS.contains(&a.as_str()))
                    .collect();
                assert!(
                    others.is_empty(),
                    "{what}: {sid}: {others:?} on {ANY_SAGEMAKER}"
                );
            }
        }
    }
    // In the template, the account and region of the stack itself.
    for (_, s) in written_statements(&template) {
        let actions = string_set(&s["Action"], "Action").expect("actions");
        if actions.iter().any(|a| TAG_ACTIONS.contains(&a.as_str())) {
            assert_eq!(
                s["Resource"],
                json!({"Fn::Sub": ANY_SAGEMAKER_SUB}),
                "{}",
                s["Sid"]
            );
        }
    }
}

#[test]
fn template_role_adds_only_the_failure_destination() {
    let template = template();
    let policies = role_policies(&template);
    let names: BTreeSet<&str> = policies.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([SHARED_POLICY_NAME, "failure-destination"])
    );
    assert_eq!(
        policies["failure-destination"]["Statement"],
        json!([{
            "Sid": "SendFailedTicks",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": {"Fn::GetAtt": ["FailureQueue", "Arn"]}
        }])
    );
    let role = &resource(&template, "ExecutionRole")["Properties"];
    assert!(
        role.get("ManagedPolicyArns").is_none(),
        "no managed policies on the execution role"
    );
    assert_eq!(
        role["AssumeRolePolicyDocument"],
        json_doc("trust-policy.json", TRUST),
        "template trust policy and policies/iam/trust-policy.json differ"
    );
}

#[test]
fn update_is_scoped_by_the_name_prefix_parameter() {
    let template = template();
    let grants = template_grants(&Stack::standalone(&template));
    let (_, statement) = written_statements(&template)
        .into_iter()
        .find(|(_, s)| s["Sid"] == "UpdateInferenceExperiments")
        .expect("UpdateInferenceExperiments");
    let sub = statement["Resource"]["Fn::Sub"]
        .as_str()
        .expect("Update resource is an Fn::Sub");
    assert!(
        sub.ends_with(":inference-experiment/${ExperimentNamePrefix}*"),
        "{sub}"
    );
    assert_eq!(
        template["Parameters"]["ExperimentNamePrefix"]["Default"],
        ""
    );
    assert!(grants.contains_key("UpdateInferenceExperiments"));
}

#[test]
fn logs_go_to_the_log_group_the_role_may_write() {
    let template = template();
    let log_group = &resource(&template, "LogGroup")["Properties"];
    let name = Stack::standalone(&template).render_text(&log_group["LogGroupName"]);
    assert_eq!(name, "/aws/lambda/shadowpilot");
    assert!(
        log_group["RetentionInDays"].is_object(),
        "retention comes from a parameter"
    );
    let logging = &function(&template)["LoggingConfig"];
    assert_eq!(logging["LogFormat"], "JSON");
    assert_eq!(logging["LogGroup"], json!({"Ref": "LogGroup"}));
    let writable = &template_grants(&Stack::standalone(&template))["WriteOwnLogs"].resources;
    assert_eq!(
        writable,
        &BTreeSet::from([format!("arn:aws:logs:*:*:log-group:{name}:*")])
    );
}

// The deployment contract of README.md ("Deploying") and the architecture.

#[test]
fn one_schedule_expression_for_the_event_and_the_function() {
    let template = template();
    let f = function(&template);
    assert_eq!(
        template["Parameters"]["Schedule"]["Default"],
        "rate(10 minutes)"
    );
    assert_eq!(
        f["Environment"]["Variables"]["SHADOWPILOT_SCHEDULE"],
        json!({"Ref": "Schedule"})
    );
    let events = f["Events"].as_object().expect("Events");
    assert_eq!(events.len(), 1, "one schedule");
    let tick = &events["Tick"];
    assert_eq!(tick["Type"], "ScheduleV2");
    assert_eq!(
        tick["Properties"]["ScheduleExpression"],
        json!({"Ref": "Schedule"})
    );
    assert_eq!(tick["Properties"]["ScheduleExpressionTimezone"], "UTC");
    assert_eq!(tick["Properties"]["State"], json!({"Ref": "ScheduleState"}));
}

#[test]
fn scheduled_input_is_a_live_run_payload() {
    let template = template();
    let input = function(&template)["Events"]["Tick"]["Properties"]["Input"]
        .as_str()
        .expect("ScheduleV2 Input is a JSON string");
    assert_eq!(json_doc("Input", input), json!({"dry_run": false}));
    assert_eq!(
        function(&template)["Environment"]["Variables"]["SHADOWPILOT_DRY_RUN"],
        json!({"Ref": "DryRun"})
    );
}

#[test]
fn ticks_are_never_retried_late_or_overlapping() {
    let template = template();
    let f = function(&template);
    let timeout = f["Timeout"].as_u64().expect("Timeout");
    assert!(
        timeout < MIN_PERIOD_SECS,
        "timeout {timeout}s must be below the shortest period {MIN_PERIOD_SECS}s"
    );

    let invoke = &f["EventInvokeConfig"];
    assert_eq!(invoke["MaximumRetryAttempts"], 0);
    let age = invoke["MaximumEventAgeInSeconds"]
        .as_u64()
        .expect("MaximumEventAgeInSeconds");
    assert!((60..=MIN_PERIOD_SECS).contains(&age), "event age {age}s");
    assert_eq!(invoke["DestinationConfig"]["OnFailure"]["Type"], "SQS");

    let retry = &f["Events"]["Tick"]["Properties"]["RetryPolicy"];
    assert_eq!(retry["MaximumRetryAttempts"], 0);
    let age = retry["MaximumEventAgeInSeconds"]
        .as_u64()
        .expect("RetryPolicy.MaximumEventAgeInSeconds");
    assert!(
        (60..=MIN_PERIOD_SECS).contains(&age),
        "scheduler event age {age}s"
    );

    assert_eq!(
        template["Parameters"]["ReservedConcurrency"]["Default"],
        "1"
    );
    assert_eq!(
        f["ReservedConcurrentExecutions"],
        json!({"Fn::If": ["ReserveConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})
    );
}

#[test]
fn built_the_way_sam_builds_rust() {
    let template = template();
    let f = resource(&template, "ShadowpilotFunction");
    assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
    assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], "bootstrap");
    let p = &f["Properties"];
    assert_eq!(p["Runtime"], "provided.al2023");
    assert_eq!(p["Handler"], "bootstrap");
    assert_eq!(p["Architectures"], json!([{"Ref": "Architecture"}]));
    assert_eq!(template["Parameters"]["Architecture"]["Default"], "x86_64");
}

/// Every alarm on shadowpilot's own namespace reads a metric the function
/// writes (report::emf), so a renamed metric cannot leave an alarm that
/// never fires; and the heartbeat alarm exists only with the schedule on.
#[test]
fn alarms_watch_metrics_the_function_emits() {
    use shadowpilot_core::report::emf::{NAMESPACE, TICK_METRICS};
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    let emitted: BTreeSet<&str> = TICK_METRICS
        .iter()
        .map(|(name, _)| *name)
        .chain(["Heartbeat", "SamplingPercentage"])
        .collect();
    let mut watched = BTreeSet::new();
    for (id, resource) in resources {
        if resource["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let properties = &resource["Properties"];
        let mut stats = vec![properties.clone()];
        if let Some(metrics) = properties["Metrics"].as_array() {
            stats.extend(metrics.iter().map(|m| m["MetricStat"]["Metric"].clone()));
        }
        for stat in stats {
            if stat["Namespace"] == NAMESPACE {
                let name = stat["MetricName"].as_str().expect("MetricName");
                assert!(emitted.contains(name), "{id} watches {name}, never emitted");
                watched.insert(name.to_string());
            }
        }
    }
    for expected in [
        "AwsErrors",
        "WritesRejected",
        "AttentionFailing",
        "AttentionFailingAtFloor",
        "AttentionCannotExtend",
        "Heartbeat",
    ] {
        assert!(watched.contains(expected), "no alarm on {expected}");
    }
    assert_eq!(
        resource(&template, "HeartbeatAlarm")["Condition"],
        "ScheduleEnabled"
    );
}

// ------------------------------------------------------------ data capture

fn grant(actions: &[&str], resources: &[&str], condition: Value) -> Grant {
    Grant {
        effect: "Allow".into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        resources: resources.iter().map(|r| r.to_string()).collect(),
        condition,
    }
}

fn capture_sids(grants: &BTreeMap<String, Grant>) -> BTreeSet<String> {
    grants
        .keys()
        .filter(|sid| CAPTURE_SIDS.contains(&sid.as_str()))
        .cloned()
        .collect()
}

fn stack_with<'a>(template: &'a Value, params: &[(&str, &str)]) -> Stack<'a> {
    params
        .iter()
        .fold(Stack::deployed(template), |stack, (name, value)| {
            stack.with(name, value)
        })
}

#[test]
fn the_iam_wildcard_model_matches_like_iam() {
    assert!(wildcard(
        "shadow-tests/*",
        "shadow-tests/e/v/2026/03/02/10/"
    ));
    assert!(wildcard("shadow-tests/*", "shadow-tests/"));
    assert!(!wildcard("shadow-tests/*", "shadow-tests"));
    assert!(!wildcard("shadow-tests/*", "shadow-tests-old/x"));
    assert!(wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b/c"));
    assert!(!wildcard("arn:aws:s3:::b", "arn:aws:s3:::bb"));
    assert!(wildcard("a?c*d", "abcxxd"));
    assert!(!wildcard("a?c*d", "acxxd"));
    assert!(wildcard("*", ""));
}

/// Evaluated as CloudFormation would: without CaptureBucket no capture
/// statement exists, whatever CapturePrefix and CaptureKmsKey say; with it,
/// the two S3 statements, plus the one KMS statement of the key's form.
/// The other statements never change with the capture parameters.
#[test]
fn capture_statements_exist_only_with_their_parameters() {
    let template = template();
    let base = template_grants(&Stack::deployed(&template));
    assert!(capture_sids(&base).is_empty(), "{base:?}");
    let bucket = ("CaptureBucket", "churn-capture");
    let prefix = ("CapturePrefix", "shadow-tests");
    let (arn, alias) = (("CaptureKmsKey", KEY_ARN), ("CaptureKmsKey", "alias/churn"));
    let s3 = ["ListCapture", "ReadCapture"];
    /// The parameters set, and the capture statements expected.
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![], vec![]),
        (vec![prefix], vec![]),
        (vec![prefix, arn], vec![]),
        (vec![prefix, alias], vec![]),
        (vec![bucket], s3.to_vec()),
        (vec![bucket, prefix], s3.to_vec()),
        (
            vec![bucket, arn],
            [&s3[..], &["DecryptCaptureWithKey"]].concat(),
        ),
        (
            vec![bucket, prefix, alias],
            [&s3[..], &["DecryptCaptureByAlias"]].concat(),
        ),
    ];
    for (params, expected) in cases {
        let grants = template_grants(&stack_with(&template, &params));
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(capture_sids(&grants), expected, "{params:?}");
        assert_eq!(without_capture(&grants), base, "{params:?}");
        for (sid, g) in without_capture(&grants) {
            assert!(
                g.actions
                    .iter()
                    .all(|a| !CAPTURE_ACTIONS.contains(&a.as_str())),
                "{sid} grants a capture action: {params:?}"
            );
        }
    }
    // As written: each capture statement, and only those, sits under an
    // Fn::If (so AWS::NoValue removes it).
    for (condition, statement) in written_statements(&template) {
        let sid = statement["Sid"].as_str().expect("Sid");
        assert_eq!(
            condition.is_some(),
            CAPTURE_SIDS.contains(&sid),
            "{sid}: under {condition:?}"
        );
    }
}

/// What each statement grants in a deployed stack, exactly.
#[test]
fn capture_grants_name_the_bucket_the_prefix_and_the_key() {
    let template = template();
    let via_s3 = json!({"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}});
    let params = [
        ("CaptureBucket", "churn-capture"),
        ("CapturePrefix", "shadow-tests/churn"),
        ("CaptureKmsKey", KEY_ARN),
    ];
    let grants = template_grants(&stack_with(&template, &params));
    assert_eq!(
        grants["ListCapture"],
        grant(
            &["s3:ListBucket"],
            &["arn:aws:s3:::churn-capture"],
            json!({"StringLike": {"s3:prefix": ["shadow-tests/churn/*"]}})
        )
    );
    assert_eq!(
        grants["ReadCapture"],
        grant(
            &["s3:GetObject"],
            &["arn:aws:s3:::churn-capture/shadow-tests/churn/*"],
            Value::Null
        )
    );
    assert_eq!(
        grants["DecryptCaptureWithKey"],
        grant(&["kms:Decrypt"], &[KEY_ARN], via_s3.clone())
    );

    let by_alias = template_grants(&stack_with(
        &template,
        &[
            params[0],
            params[1],
            ("CaptureKmsKey", "alias/churn-capture"),
        ],
    ));
    let mut condition = via_s3.clone();
    condition["ForAnyValue:StringEquals"] = json!({"kms:ResourceAliases": "alias/churn-capture"});
    assert_eq!(
        by_alias["DecryptCaptureByAlias"],
        grant(
            &["kms:Decrypt"],
            &["arn:aws:kms:eu-west-1:123456789012:key/*"],
            condition
        )
    );

    // Without a prefix: the whole bucket, listing by any prefix.
    let whole = template_grants(&stack_with(&template, &[params[0]]));
    assert_eq!(
        whole["ListCapture"],
        grant(
            &["s3:ListBucket"],
            &["arn:aws:s3:::churn-capture"],
            Value::Null
        )
    );
    assert_eq!(
        whole["ReadCapture"],
        grant(
            &["s3:GetObject"],
            &["arn:aws:s3:::churn-capture/*"],
            Value::Null
        )
    );
}

/// The grants judged by IAM's rules against the requests shadowpilot makes
/// (the hour prefixes `capture::read` lists, the objects under them) and
/// against requests it must not be able to make.
#[test]
fn capture_grants_allow_what_shadowpilot_reads_and_nothing_beside() {
    use shadowpilot_core::capture::read::Destination;
    let template = template();
    let bucket = "churn-capture";
    let grants = template_grants(&stack_with(
        &template,
        &[
            ("CaptureBucket", bucket),
            ("CapturePrefix", "shadow-tests"),
            ("CaptureKmsKey", KEY_ARN),
        ],
    ));
    let now = chrono::Utc::now();
    // With and without a trailing slash: shadowpilot lists the same keys.
    for destination in [
        "s3://churn-capture/shadow-tests/churn",
        "s3://churn-capture/shadow-tests/churn/",
        "s3://churn-capture/shadow-tests",
    ] {
        let destination = Destination::parse(destination).expect("a destination");
        let prefixes = destination.hour_prefixes(
            "churn-endpoint",
            "shadow",
            now - chrono::Duration::hours(3),
            now,
        );
        assert!(prefixes.len() >= 3, "{prefixes:?}");
        for prefix in prefixes {
            assert!(
                allowed(&grants, &list_bucket(bucket, Some(&prefix))),
                "ListObjectsV2 of {prefix}"
            );
            let key = format!("{prefix}20-48-871-0b7bfd33-c8a7-4adf-a09a-98fd0af79974.jsonl");
            assert!(
                allowed(&grants, &get_object(bucket, &key)),
                "GetObject {key}"
            );
        }
    }
    // Should SageMaker double the slash of a Destination ending in one.
    assert!(allowed(
        &grants,
        &get_object(
            bucket,
            "shadow-tests//churn-endpoint/shadow/2026/03/02/10/a.jsonl"
        )
    ));

    for (what, request) in [
        ("listing without a prefix", list_bucket(bucket, None)),
        ("listing the bucket's root", list_bucket(bucket, Some(""))),
        (
            "listing beside the prefix",
            list_bucket(bucket, Some("shadow-tests-old/")),
        ),
        (
            "listing another prefix",
            list_bucket(bucket, Some("billing/")),
        ),
        (
            "listing another bucket",
            list_bucket("other-bucket", Some("shadow-tests/")),
        ),
        (
            "reading beside the prefix",
            get_object(bucket, "shadow-tests-old/a.jsonl"),
        ),
        (
            "reading another prefix",
            get_object(bucket, "billing/2026.csv"),
        ),
        (
            "reading another bucket",
            get_object("other-bucket", "shadow-tests/a.jsonl"),
        ),
        (
            "writing",
            Request {
                action: "s3:PutObject",
                resource: format!("arn:aws:s3:::{bucket}/shadow-tests/a.jsonl"),
                context: vec![],
            },
        ),
    ] {
        assert!(!allowed(&grants, &request), "{what} is allowed");
    }

    let s3_here = Some("s3.eu-west-1.amazonaws.com");
    let other_key = "arn:aws:kms:eu-west-1:123456789012:key/ffffffff-0000-0000-0000-000000000000";
    assert!(allowed(&grants, &decrypt(KEY_ARN, s3_here, &[])));
    for (what, request) in [
        ("decrypting directly", decrypt(KEY_ARN, None, &[])),
        (
            "decrypting through another region's S3",
            decrypt(KEY_ARN, Some("s3.us-east-1.amazonaws.com"), &[]),
        ),
        (
            "decrypting through another service",
            decrypt(KEY_ARN, Some("secretsmanager.eu-west-1.amazonaws.com"), &[]),
        ),
        (
            "decrypting with another key",
            decrypt(other_key, s3_here, &[]),
        ),
    ] {
        assert!(!allowed(&grants, &request), "{what} is allowed");
    }

    let by_alias = template_grants(&stack_with(
        &template,
        &[
            ("CaptureBucket", bucket),
            ("CaptureKmsKey", "alias/churn-capture"),
        ],
    ));
    assert!(allowed(
        &by_alias,
        &decrypt(other_key, s3_here, &["alias/other", "alias/churn-capture"])
    ));
    for (what, request) in [
        (
            "a key without the alias",
            decrypt(other_key, s3_here, &["alias/other"]),
        ),
        ("a key without aliases", decrypt(other_key, s3_here, &[])),
        (
            "the alias's key directly",
            decrypt(other_key, None, &["alias/churn-capture"]),
        ),
        (
            "a key of another account",
            decrypt(
                "arn:aws:kms:eu-west-1:210987654321:key/ffffffff-0000-0000-0000-000000000000",
                s3_here,
                &["alias/churn-capture"],
            ),
        ),
    ] {
        assert!(!allowed(&by_alias, &request), "{what} is allowed");
    }

    // No KMS key: no decryption at all; no bucket: no capture at all.
    let no_kms = template_grants(&stack_with(&template, &[("CaptureBucket", bucket)]));
    assert!(!allowed(
        &no_kms,
        &decrypt(KEY_ARN, s3_here, &["alias/churn-capture"])
    ));
    assert!(allowed(&no_kms, &list_bucket(bucket, None)));
    assert!(allowed(&no_kms, &get_object(bucket, "any/key.jsonl")));
    let none = template_grants(&stack_with(
        &template,
        &[
            ("CapturePrefix", "shadow-tests"),
            ("CaptureKmsKey", KEY_ARN),
        ],
    ));
    assert!(!allowed(
        &none,
        &list_bucket(bucket, Some("shadow-tests/x/"))
    ));
    assert!(!allowed(
        &none,
        &get_object(bucket, "shadow-tests/x/a.jsonl")
    ));
    assert!(!allowed(&none, &decrypt(KEY_ARN, s3_here, &[])));
}

/// Unedited, the document's capture statements allow nothing (their
/// placeholders name no bucket, key or alias that can exist); filled in the
/// way policies/iam/README.md says, they grant what the template grants in
/// that region and account.
#[test]
fn the_documents_capture_placeholders_grant_nothing_until_filled_in() {
    let document = document_grants();
    let s3_here = Some("s3.eu-west-1.amazonaws.com");
    for sid in CAPTURE_SIDS {
        let g = &document[*sid];
        assert!(
            format!("{:?} {}", g.resources, g.condition).contains('<'),
            "{sid} names a placeholder: {g:?}"
        );
    }
    assert!(!allowed(
        &document,
        &list_bucket("churn-capture", Some("shadow-tests/x/"))
    ));
    assert!(!allowed(
        &document,
        &get_object("churn-capture", "shadow-tests/x/a.jsonl")
    ));
    assert!(!allowed(
        &document,
        &decrypt(KEY_ARN, s3_here, &["alias/churn-capture"])
    ));

    // The README's sed: the region and account, then the placeholders.
    let key_id = KEY_ARN.rsplit_once("key/").expect("a key ARN").1;
    let filled = POLICY
        .replace(":*:*:", ":eu-west-1:123456789012:")
        .replace("<region>", "eu-west-1")
        .replace("<capture-bucket>", "churn-capture")
        .replace("<capture-prefix>", "shadow-tests")
        .replace("<capture-key-id>", key_id)
        .replace("<capture-key-alias>", "churn-capture");
    let filled = grants(&json_doc("filled in", &filled), "filled in");
    let template = template();
    for kms_key in [KEY_ARN, "alias/churn-capture"] {
        let deployed = template_grants(&stack_with(
            &template,
            &[
                ("CaptureBucket", "churn-capture"),
                ("CapturePrefix", "shadow-tests"),
                ("CaptureKmsKey", kms_key),
            ],
        ));
        for sid in capture_sids(&deployed) {
            assert_eq!(filled[&sid], deployed[&sid], "{sid} with {kms_key}");
        }
    }
}

/// In both documents, a statement on every key of an account
/// (`key/*`) is limited to keys with the alias.
#[test]
fn decrypt_on_any_key_only_by_alias() {
    let template = template();
    let alias = template_grants(&Stack::standalone_capture(
        &template,
        STANDALONE_KMS_KEYS[1],
    ));
    for (what, grants) in [
        ("template.yaml", alias),
        ("policies/iam", document_grants()),
    ] {
        for (sid, g) in &grants {
            if g.resources.iter().any(|r| r.ends_with(":key/*")) {
                assert!(
                    g.condition["ForAnyValue:StringEquals"]["kms:ResourceAliases"].is_string(),
                    "{what}: {sid}: {g:?}"
                );
                assert!(
                    g.condition["StringEquals"]["kms:ViaService"].is_string(),
                    "{what}: {sid}: {g:?}"
                );
            }
        }
    }
}

#[test]
fn capture_parameters_are_optional_and_say_what_is_unconfirmed() {
    let template = template();
    for name in ["CaptureBucket", "CapturePrefix", "CaptureKmsKey"] {
        let p = &template["Parameters"][name];
        assert_eq!(p["Type"], "String", "{name}");
        assert_eq!(p["Default"], "", "{name}: empty means no capture grant");
        // .ci/deploy-checks tests what the patterns accept and refuse (IAM
        // wildcards and policy variables among the refused).
        assert!(p["AllowedPattern"].is_string(), "{name}: AllowedPattern");
        assert!(p["ConstraintDescription"].is_string(), "{name}");
    }
    let description = |name: &str| {
        template["Parameters"][name]["Description"]
            .as_str()
            .expect("Description")
            .to_string()
    };
    assert!(description("CapturePrefix").contains("Unconfirmed"));
    assert!(description("CapturePrefix").contains("slash"));
    assert!(description("CaptureKmsKey").contains("Unconfirmed"));
    assert!(description("CaptureKmsKey").contains("kms:Decrypt"));
}
