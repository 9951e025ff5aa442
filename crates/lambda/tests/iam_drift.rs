//! The two deployment paths must grant the same permissions and keep the
//! deployment contract: template.yaml (SAM) and policies/iam/*.json (the
//! cargo-lambda path, `cargo lambda deploy --iam-role ...`).
//!
//! template.yaml is read as plain YAML with unknown tags rejected, so it must
//! use the long form of intrinsic functions (`Fn::Sub:`, `Ref:`), never
//! `!Sub` or `!Ref`: serde-saphyr would otherwise drop the tag silently and
//! this test would compare the wrong thing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use shadowpilot_core::experiment::TAG_PREFIX;

const TEMPLATE: &str = include_str!("../../../template.yaml");
const POLICY: &str = include_str!("../../../policies/iam/shadowpilot-policy.json");
const TRUST: &str = include_str!("../../../policies/iam/trust-policy.json");

/// The one inline policy of the execution role that must equal POLICY.
const SHARED_POLICY_NAME: &str = "shadowpilot";

/// The calls shadowpilot makes, and nothing else. In particular never
/// StopInferenceExperiment or Create/Delete/Start; tags are written only
/// under TAG_WRITES's condition.
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
];

/// The tag writes, allowed only for keys under shadowpilot's prefix.
const TAG_WRITES: &[&str] = &["sagemaker:AddTags", "sagemaker:DeleteTags"];

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

/// The shortest schedule period the `Schedule` parameter's AllowedPattern
/// admits (rate(3 minutes); a cron minute step of 3). .ci/deploy-checks tests
/// the pattern itself.
const MIN_PERIOD_SECS: u64 = 180;

fn template() -> Value {
    let options = serde_saphyr::options! { reject_unsupported_tags: true };
    serde_saphyr::from_str_with_options(TEMPLATE, options)
        .expect("template.yaml must parse as plain YAML: write intrinsics as `Fn::Sub:`/`Ref:`, not `!Sub`/`!Ref`")
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

/// Resolves a string or an `Fn::Sub` of the template to the text the
/// standalone document uses: pseudo parameters from PSEUDO, template
/// parameters by their Default. Anything else is an error, so a new
/// variable or intrinsic needs a decision here.
fn resolve(value: &Value, template: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
            let text = map["Fn::Sub"]
                .as_str()
                .ok_or("only the one-argument Fn::Sub is supported")?;
            let mut out = String::new();
            let mut rest = text;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let end = rest[start..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?
                    + start;
                let name = &rest[start + 2..end];
                let replacement = if let Some((_, v)) = PSEUDO.iter().find(|(k, _)| *k == name) {
                    v.to_string()
                } else if let Some(default) =
                    template.pointer(&format!("/Parameters/{name}/Default"))
                {
                    default
                        .as_str()
                        .ok_or_else(|| format!("parameter {name} has a non-string Default"))?
                        .to_string()
                } else {
                    return Err(format!(
                        "{text:?}: no standalone equivalent for ${{{name}}}"
                    ));
                };
                out.push_str(&replacement);
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Ok(out)
        }
        other => Err(format!("unsupported value {other}")),
    }
}

fn string_set(value: &Value, template: &Value, what: &str) -> Result<BTreeSet<String>, String> {
    match value {
        Value::Array(items) => items.iter().map(|v| resolve(v, template)).collect(),
        Value::Null => Err(format!("{what} is missing")),
        single => Ok(BTreeSet::from([resolve(single, template)?])),
    }
}

/// A statement reduced to what it grants, keyed by Sid.
#[derive(Debug, PartialEq, Eq)]
struct Grant {
    effect: String,
    actions: BTreeSet<String>,
    resources: BTreeSet<String>,
    condition: Value,
}

fn grants(policy: &Value, template: &Value, what: &str) -> BTreeMap<String, Grant> {
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
            actions: string_set(&s["Action"], template, "Action")
                .unwrap_or_else(|e| panic!("{at} ({sid}): {e}")),
            resources: string_set(&s["Resource"], template, "Resource")
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

fn template_grants(template: &Value) -> BTreeMap<String, Grant> {
    let policies = role_policies(template);
    let shared = policies
        .get(SHARED_POLICY_NAME)
        .unwrap_or_else(|| panic!("ExecutionRole has no inline policy {SHARED_POLICY_NAME:?}"));
    grants(shared, template, "template.yaml ExecutionRole")
}

fn document_grants() -> BTreeMap<String, Grant> {
    let doc = json_doc("shadowpilot-policy.json", POLICY);
    grants(&doc, &Value::Null, "policies/iam/shadowpilot-policy.json")
}

#[test]
fn template_role_and_standalone_policy_grant_the_same() {
    let template = template();
    let in_template = template_grants(&template);
    let in_document = document_grants();

    let mut problems = Vec::new();
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
        // Only the tag writes carry a condition, checked in
        // tag_writes_are_limited_to_shadowpilot_keys.
        if g.actions.iter().all(|a| !TAG_WRITES.contains(&a.as_str())) {
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
        ("template.yaml", template_grants(&template)),
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
    for s in role_policies(&template)[SHARED_POLICY_NAME]["Statement"]
        .as_array()
        .expect("Statement is a list")
    {
        let actions = string_set(&s["Action"], &template, "Action").expect("actions");
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
    let grants = template_grants(&template);
    let statement = role_policies(&template)[SHARED_POLICY_NAME]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "UpdateInferenceExperiments")
        .cloned()
        .unwrap();
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
    let name = resolve(&log_group["LogGroupName"], &template).unwrap();
    assert_eq!(name, "/aws/lambda/shadowpilot");
    assert!(
        log_group["RetentionInDays"].is_object(),
        "retention comes from a parameter"
    );
    let logging = &function(&template)["LoggingConfig"];
    assert_eq!(logging["LogFormat"], "JSON");
    assert_eq!(logging["LogGroup"], json!({"Ref": "LogGroup"}));
    let writable = &template_grants(&template)["WriteOwnLogs"].resources;
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
