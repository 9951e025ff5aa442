//! End-to-end support: a stateful local stand-in for the AWS APIs the
//! binaries call (SageMaker over awsJson1.1, CloudWatch GetMetricData over
//! Smithy RPC v2 CBOR, EventBridge PutEvents, S3 ListObjectsV2 and
//! GetObject path-style over REST-XML), a fake Lambda Runtime API, and
//! child processes that are always killed and whose every wait is bounded.
//!
//! The test binary must declare `mod aws_support;` next to `mod e2e_support;`:
//! the HTTP server and the CBOR codec come from there.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::http::{cbor_to_json, Cbor, Recorded, Reply, Server};

pub const REGION: &str = "eu-west-1";
pub const ACCOUNT: &str = "123456789012";
pub const GET_METRIC_DATA_PATH: &str =
    "/service/GraniteServiceVersion20100801/operation/GetMetricData";
/// How long any single wait on a child process or a fake may take before
/// the test fails instead of hanging CI.
pub const WAIT: Duration = Duration::from_secs(90);

/// Seconds since the epoch, as the fakes and AWS count time.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

pub const HOUR: f64 = 3600.0;
pub const DAY: f64 = 86_400.0;

// ------------------------------------------------------------- the world

/// What CloudWatch reports for one variant: counts per hour (scaled to
/// each period asked for), latencies the same in every period, in
/// microseconds as SageMaker publishes ModelLatency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Invocations Sum. Zero means "no traffic": every series of the variant
    /// comes back without datapoints, as CloudWatch does.
    pub invocations: f64,
    pub errors_4xx: f64,
    pub errors_5xx: f64,
    pub model_errors: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Profile {
    pub fn production() -> Self {
        Self {
            invocations: 60_000.0,
            errors_4xx: 0.0,
            errors_5xx: 6.0,
            model_errors: 0.0,
            p50_us: 20_000.0,
            p99_us: 80_000.0,
        }
    }

    /// A shadow as good as production, with plenty of evidence.
    pub fn healthy_shadow() -> Self {
        Self {
            invocations: 3_000.0,
            errors_5xx: 0.0,
            p50_us: 21_000.0,
            p99_us: 85_000.0,
            ..Self::production()
        }
    }

    /// p99 three times production's.
    pub fn slow_shadow() -> Self {
        Self {
            p99_us: 3.0 * Self::production().p99_us,
            ..Self::healthy_shadow()
        }
    }

    pub fn silent() -> Self {
        Self {
            invocations: 0.0,
            ..Self::healthy_shadow()
        }
    }

    /// The value of one series, or `None` for "no datapoint".
    fn value(&self, metric: &str, stat: &str) -> Option<f64> {
        if self.invocations <= 0.0 {
            return None;
        }
        let latency = |stat: &str| match stat {
            "p50" | "Average" | "Minimum" => Some(self.p50_us),
            "Maximum" => Some(self.p99_us * 1.5),
            "SampleCount" => Some(self.invocations),
            p if p.starts_with('p') => Some(self.p99_us),
            _ => None,
        };
        let count = |n: f64| match stat {
            "Sum" | "SampleCount" => Some(n),
            _ => None,
        };
        match metric {
            "Invocations" => count(self.invocations),
            "Invocation4XXErrors" => count(self.errors_4xx),
            "Invocation5XXErrors" => count(self.errors_5xx),
            "InvocationModelErrors" => count(self.model_errors),
            "ModelLatency" => latency(stat),
            // Overhead is a twentieth of model latency; its sample count is
            // the invocations', like every latency metric's.
            "OverheadLatency" if stat == "SampleCount" => latency(stat),
            "OverheadLatency" => latency(stat).map(|us| us / 20.0),
            _ => None,
        }
    }
}

/// One inference experiment as the fake SageMaker keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeExperiment {
    pub name: String,
    pub status: String,
    pub endpoint: String,
    pub production_variant: String,
    pub shadow_variant: String,
    pub sampling: i64,
    pub start_time: f64,
    pub end_time: f64,
    pub creation_time: f64,
    pub last_modified: f64,
    pub tags: Vec<(String, String)>,
    pub production: Profile,
    pub shadow: Profile,
    /// What Describe answers as DataStorageConfig; `None` leaves it out.
    pub capture: Option<FakeCapture>,
}

/// An experiment's DataStorageConfig, as Describe answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCapture {
    /// `s3://bucket/prefix`, with or without a trailing slash.
    pub destination: String,
    pub kms_key: Option<String>,
}

impl FakeExperiment {
    /// Running at 5 %, opted in with `shadowpilot:policy=default`, last
    /// changed three hours ago (longer than the default policy's dwell, and
    /// enough ten-minute periods to judge a p99 at 5 %), five days left,
    /// healthy metrics.
    pub fn new(name: &str) -> Self {
        // Whole seconds, so limits such as StartTime + 30 d are exact.
        let now = epoch_now().floor();
        Self {
            name: name.to_string(),
            status: "Running".into(),
            endpoint: format!("{name}-endpoint"),
            production_variant: "production".into(),
            shadow_variant: "shadow".into(),
            sampling: 5,
            start_time: now - DAY,
            end_time: now + 5.0 * DAY,
            creation_time: now - DAY - HOUR,
            last_modified: now - 3.0 * HOUR,
            tags: vec![
                ("shadowpilot:policy".into(), "default".into()),
                ("team".into(), "e2e".into()),
            ],
            production: Profile::production(),
            shadow: Profile::healthy_shadow(),
            capture: Some(FakeCapture {
                destination: format!("s3://captures/{name}/"),
                kms_key: None,
            }),
        }
    }

    /// Describe answers this DataStorageConfig (Destination, KmsKey).
    pub fn capture(mut self, destination: &str, kms_key: Option<&str>) -> Self {
        self.capture = Some(FakeCapture {
            destination: destination.into(),
            kms_key: kms_key.map(str::to_string),
        });
        self
    }

    /// Describe answers no DataStorageConfig at all.
    pub fn without_capture(mut self) -> Self {
        self.capture = None;
        self
    }

    pub fn untagged(mut self) -> Self {
        self.tags
            .retain(|(key, _)| !key.starts_with("shadowpilot:"));
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.retain(|(k, _)| k != key);
        self.tags.push((key.into(), value.into()));
        self
    }

    pub fn sampling(mut self, percentage: i64) -> Self {
        self.sampling = percentage;
        self
    }

    pub fn status(mut self, status: &str) -> Self {
        self.status = status.into();
        self
    }

    pub fn shadow(mut self, profile: Profile) -> Self {
        self.shadow = profile;
        self
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:sagemaker:{REGION}:{ACCOUNT}:inference-experiment/{}",
            self.name
        )
    }

    fn schedule(&self) -> Value {
        json!({"StartTime": self.start_time, "EndTime": self.end_time})
    }

    fn summary(&self) -> Value {
        json!({
            "Name": self.name,
            "Type": "ShadowMode",
            "Schedule": self.schedule(),
            "Status": self.status,
            "Description": format!("{} shadow test", self.name),
            "CreationTime": self.creation_time,
            "LastModifiedTime": self.last_modified,
            "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/SageMakerInferenceExperiments"),
        })
    }

    fn described(&self) -> Value {
        let variant = |name: &str, count: u32| {
            json!({
                "ModelName": format!("{}-{name}", self.name),
                "VariantName": name,
                "InfrastructureConfig": {
                    "InfrastructureType": "RealTimeInference",
                    "RealTimeInferenceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": count}
                },
                "Status": "InService"
            })
        };
        // Describe answers every field of the list row, and more.
        let mut described = self.summary();
        described["Arn"] = json!(self.arn());
        let more = json!({
            "EndpointMetadata": {
                "EndpointName": self.endpoint,
                "EndpointConfigName": format!("{}-config", self.endpoint),
                "EndpointStatus": "InService"
            },
            "ModelVariants": [variant(&self.production_variant, 2), variant(&self.shadow_variant, 1)],
            "ShadowModeConfig": {
                "SourceModelVariantName": self.production_variant,
                "ShadowModelVariants": [
                    {"ShadowModelVariantName": self.shadow_variant, "SamplingPercentage": self.sampling}
                ]
            }
        });
        if let (Some(target), Value::Object(extra)) = (described.as_object_mut(), more) {
            target.extend(extra);
        }
        if let Some(capture) = &self.capture {
            let mut config = json!({
                "Destination": capture.destination,
                "ContentType": {"JsonContentTypes": ["application/json"]}
            });
            if let Some(key) = &capture.kms_key {
                config["KmsKey"] = json!(key);
            }
            described["DataStorageConfig"] = config;
        }
        described
    }
}

/// A fleet as a tick finds it: most opted in and healthy, some regressed,
/// some without the tag, a few finished.
pub fn fleet(n: usize, evidence_days: f64) -> Vec<FakeExperiment> {
    (0..n)
        .map(|i| {
            let mut experiment = FakeExperiment::new(&format!("exp-{i:04}"));
            let now = epoch_now().floor();
            experiment.start_time = now - evidence_days * 86_400.0;
            experiment.creation_time = experiment.start_time - 3600.0;
            // One step since the start: the step sequence reads it all too.
            experiment.last_modified = experiment.start_time;
            experiment.end_time =
                (experiment.start_time + 30.0 * 86_400.0).min(now + 5.0 * 86_400.0);
            match i % 10 {
                7 => experiment.shadow(Profile::slow_shadow()).sampling(25),
                8 if n > 1 => experiment.untagged(),
                9 if n > 1 => experiment.status("Completed"),
                _ => experiment,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// ListInferenceExperiments pages hold at most this many rows (the
    /// smaller of this and the request's MaxResults).
    pub list_page_size: usize,
    /// Added to every answer, to model the network and AWS.
    pub latency: Duration,
    /// The first `n` requests of each named operation (as [`operation`]
    /// names them: `SageMaker.DescribeInferenceExperiment`,
    /// `CloudWatch.GetMetricData`, ...) are throttled, as a burst on a
    /// busy account would be.
    pub throttle_first: Vec<(&'static str, usize)>,
    /// ListObjectsV2 pages hold at most this many keys (the smaller of this
    /// and the request's max-keys). Far below S3's 1000, so that any
    /// listing of a few objects follows continuation tokens.
    pub s3_page_size: usize,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            list_page_size: 100,
            latency: Duration::ZERO,
            throttle_first: Vec::new(),
            s3_page_size: 2,
        }
    }
}

/// A change someone makes to the experiments while a tick runs.
pub type Mutation = Box<dyn FnOnce(&mut Vec<FakeExperiment>) + Send>;

struct World {
    /// In list order.
    experiments: Vec<FakeExperiment>,
    /// Applied right after the first GetMetricData is answered: between a
    /// tick's reads and its writes.
    after_metrics: Option<Mutation>,
    options: FakeOptions,
    /// Requests the fake refused as invalid, in words: AWS would have
    /// refused them too. Tests assert this stays empty.
    violations: Vec<String>,
    /// Requests throttled so far, per operation.
    throttled: HashMap<String, usize>,
    /// Every PutEvents entry received, in order.
    events: Vec<Value>,
    s3: S3World,
    /// `host:port` of the fake itself: an S3 request for any other Host
    /// (`bucket.host:port`, virtual-hosted style) is a violation.
    host: String,
}

/// SageMaker and CloudWatch behind one local endpoint, as
/// `AWS_ENDPOINT_URL` sends both services to it.
pub struct FakeAws {
    server: Server,
    world: Arc<Mutex<World>>,
}

impl FakeAws {
    pub fn start(experiments: Vec<FakeExperiment>) -> Self {
        Self::with_options(experiments, FakeOptions::default())
    }

    pub fn with_options(experiments: Vec<FakeExperiment>, options: FakeOptions) -> Self {
        let world = Arc::new(Mutex::new(World {
            experiments,
            after_metrics: None,
            options,
            violations: Vec::new(),
            throttled: HashMap::new(),
            events: Vec::new(),
            s3: S3World::default(),
            host: String::new(),
        }));
        let shared = world.clone();
        let server = Server::start(move |request| {
            let latency = shared.lock().expect("not poisoned").options.latency;
            if !latency.is_zero() {
                thread::sleep(latency);
            }
            answer(&shared, request)
        });
        world.lock().expect("not poisoned").host = server
            .url
            .strip_prefix("http://")
            .unwrap_or(&server.url)
            .to_string();
        Self { server, world }
    }

    // ------------------------------------------------------------- S3

    /// Stores an object (creating its bucket), as a PutObject would.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: impl Into<Vec<u8>>) {
        let mut world = self.world.lock().expect("not poisoned");
        world.s3.buckets.insert(bucket.to_string());
        world
            .s3
            .objects
            .insert((bucket.to_string(), key.to_string()), bytes.into());
    }

    /// A bucket without objects (ListObjectsV2 answers an empty page, not
    /// NoSuchBucket).
    pub fn create_bucket(&self, bucket: &str) {
        let mut world = self.world.lock().expect("not poisoned");
        world.s3.buckets.insert(bucket.to_string());
    }

    /// Every S3 request on `bucket` is refused with AccessDenied, as for a
    /// role without s3:ListBucket or s3:GetObject there.
    pub fn deny_bucket(&self, bucket: &str) {
        let mut world = self.world.lock().expect("not poisoned");
        world.s3.denied.push(S3Denial {
            bucket: bucket.to_string(),
            key: None,
            kms: false,
        });
    }

    /// GetObject of this one key is refused with AccessDenied.
    pub fn deny_object(&self, bucket: &str, key: &str) {
        let mut world = self.world.lock().expect("not poisoned");
        world.s3.denied.push(S3Denial {
            bucket: bucket.to_string(),
            key: Some(key.to_string()),
            kms: false,
        });
    }

    /// GetObject of this key is refused as S3 refuses an SSE-KMS object to
    /// a role without kms:Decrypt: AccessDenied whose message names it.
    pub fn deny_decrypt(&self, bucket: &str, key: &str) {
        let mut world = self.world.lock().expect("not poisoned");
        world.s3.denied.push(S3Denial {
            bucket: bucket.to_string(),
            key: Some(key.to_string()),
            kms: true,
        });
    }

    /// Every S3 request, parsed, in order.
    pub fn s3_requests(&self) -> Vec<S3Request> {
        self.requests()
            .iter()
            .filter_map(S3Request::parse)
            .collect()
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Every call so far as `SageMaker.<Op>` or `CloudWatch.GetMetricData`.
    pub fn operations(&self) -> Vec<String> {
        self.requests().iter().map(operation).collect()
    }

    pub fn count(&self, operation_name: &str) -> usize {
        self.operations()
            .iter()
            .filter(|op| *op == operation_name)
            .count()
    }

    /// The bodies of every UpdateInferenceExperiment, in order.
    pub fn updates(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| operation(r) == "SageMaker.UpdateInferenceExperiment")
            .map(Recorded::json)
            .collect()
    }

    /// The bodies of every StopInferenceExperiment, in order.
    pub fn stops(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| operation(r) == "SageMaker.StopInferenceExperiment")
            .map(Recorded::json)
            .collect()
    }

    /// The names DescribeInferenceExperiment was asked for, in order.
    pub fn described_names(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| operation(r) == "SageMaker.DescribeInferenceExperiment")
            .map(|r| r.json()["Name"].clone())
            .collect()
    }

    /// Every GetMetricData request body, decoded from CBOR.
    pub fn metric_calls(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| operation(r) == "CloudWatch.GetMetricData")
            .map(|r| cbor_to_json(&r.body))
            .collect()
    }

    /// The endpoint names any GetMetricData query asked about.
    pub fn measured_endpoints(&self) -> Vec<String> {
        let mut endpoints: Vec<String> = self
            .metric_calls()
            .iter()
            .flat_map(|call| {
                call["MetricDataQueries"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|query| dimension(&query, "EndpointName"))
            .collect();
        endpoints.sort();
        endpoints.dedup();
        endpoints
    }

    pub fn experiment(&self, name: &str) -> FakeExperiment {
        self.world
            .lock()
            .expect("not poisoned")
            .experiments
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no fake experiment {name}"))
    }

    /// Changes the experiments once, right after the first GetMetricData
    /// call is answered, as a person or another tool might between a tick's
    /// reads and its writes.
    pub fn after_first_metrics(
        &self,
        mutation: impl FnOnce(&mut Vec<FakeExperiment>) + Send + 'static,
    ) {
        self.world.lock().expect("not poisoned").after_metrics = Some(Box::new(mutation));
    }

    /// Every mutating call that reached "AWS", in order, as
    /// `<operation> <experiment>`: updates name the experiment, tag calls
    /// and events carry its ARN. A dry run must leave this empty.
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|request| {
                let op = operation(request);
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let arn = match op.as_str() {
                    "SageMaker.UpdateInferenceExperiment" | "SageMaker.StopInferenceExperiment" => {
                        // A call without a Name is still a write: it counts.
                        return Some(format!(
                            "{} {}",
                            op.trim_start_matches("SageMaker."),
                            body["Name"].as_str().unwrap_or("<no Name>")
                        ));
                    }
                    "SageMaker.AddTags" | "SageMaker.DeleteTags" => body["ResourceArn"].as_str()?,
                    "AWSEvents.PutEvents" => body["Entries"][0]["Resources"][0].as_str()?,
                    _ => return None,
                };
                let name = arn
                    .rsplit_once("inference-experiment/")
                    .map_or(arn, |(_, n)| n);
                let short = op
                    .trim_start_matches("SageMaker.")
                    .trim_start_matches("AWSEvents.");
                Some(format!("{short} {name}"))
            })
            .collect()
    }

    /// The tags of the one AddTags sent for `arn`, as key → value; it must
    /// carry nothing but ResourceArn and Tags.
    pub fn added_tags(&self, arn: &str) -> BTreeMap<String, String> {
        let calls: Vec<Value> = self
            .requests()
            .iter()
            .filter(|request| operation(request) == "SageMaker.AddTags")
            .map(Recorded::json)
            .filter(|body| body["ResourceArn"] == arn)
            .collect();
        let [call] = calls.as_slice() else {
            panic!("expected one AddTags for {arn}, got {calls:#?}");
        };
        assert_eq!(
            call.as_object().map(|o| o.len()),
            Some(2),
            "ResourceArn and Tags only: {call:#}"
        );
        call["Tags"]
            .as_array()
            .expect("Tags")
            .iter()
            .map(|tag| {
                (
                    tag["Key"].as_str().expect("Key").to_string(),
                    tag["Value"].as_str().expect("Value").to_string(),
                )
            })
            .collect()
    }

    /// Every PutEvents entry received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.world.lock().expect("not poisoned").events.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.world.lock().expect("not poisoned").violations.clone()
    }
}

/// `SageMaker.<Op>` from the awsJson1.1 target, `CloudWatch.<Op>` from the
/// RPC v2 path, else the method and path.
pub fn operation(request: &Recorded) -> String {
    if let Some(target) = request.header("x-amz-target") {
        return target.to_string();
    }
    match request
        .path
        .strip_prefix("/service/GraniteServiceVersion20100801/operation/")
    {
        Some(op) => format!("CloudWatch.{op}"),
        None => match S3Request::parse(request) {
            Some(s3) => format!("S3.{}", s3.operation),
            None => format!("{} {}", request.method, request.path),
        },
    }
}

fn dimension(query: &Value, name: &str) -> Option<String> {
    query["MetricStat"]["Metric"]["Dimensions"]
        .as_array()?
        .iter()
        .find(|d| d["Name"] == name)
        .and_then(|d| d["Value"].as_str())
        .map(str::to_string)
}

fn sagemaker_error(kind: &str, message: impl Into<String>) -> Reply {
    Reply::json(400, &json!({"__type": kind, "message": message.into()}))
}

fn answer(world: &Mutex<World>, request: &Recorded) -> Reply {
    let mut world = world.lock().expect("not poisoned");
    let op = operation(request);
    let burst = world
        .options
        .throttle_first
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, n)| *n);
    if let Some(burst) = burst {
        let seen = world.throttled.entry(op.clone()).or_default();
        if *seen < burst {
            *seen += 1;
            return if op.starts_with("CloudWatch.") {
                cbor_error("Throttling", "Rate exceeded")
            } else if op.starts_with("S3.") {
                s3_error(503, "SlowDown", "Please reduce your request rate.", "")
            } else {
                sagemaker_error("ThrottlingException", "Rate exceeded")
            };
        }
    }
    if op == "CloudWatch.GetMetricData" {
        return get_metric_data(&mut world, request);
    }
    if op == "AWSEvents.PutEvents" {
        return put_events(&mut world, request);
    }
    if let Some(s3) = S3Request::parse(request) {
        return s3_answer(&mut world, &s3);
    }
    let Some(op) = op.strip_prefix("SageMaker.") else {
        world.violations.push(format!("unexpected request {op}"));
        return sagemaker_error("UnknownOperationException", op);
    };
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(err) => {
            world
                .violations
                .push(format!("{op}: body is not JSON: {err}"));
            return sagemaker_error("SerializationException", err.to_string());
        }
    };
    match op {
        "ListInferenceExperiments" => list(&mut world, &body),
        "DescribeInferenceExperiment" => {
            let name = body["Name"].as_str().unwrap_or_default();
            match world.experiments.iter().find(|e| e.name == name) {
                Some(experiment) => Reply::json(200, &experiment.described()),
                None => sagemaker_error("ResourceNotFound", format!("{name} not found")),
            }
        }
        "ListTags" => {
            let arn = body["ResourceArn"].as_str().unwrap_or_default();
            match world.experiments.iter().find(|e| e.arn() == arn) {
                Some(experiment) => {
                    let tags: Vec<Value> = experiment
                        .tags
                        .iter()
                        .map(|(k, v)| json!({"Key": k, "Value": v}))
                        .collect();
                    Reply::json(200, &json!({ "Tags": tags }))
                }
                None => {
                    world.violations.push(format!("ListTags for unknown {arn}"));
                    sagemaker_error("ValidationException", format!("{arn} not found"))
                }
            }
        }
        "UpdateInferenceExperiment" => update(&mut world, &body),
        "StopInferenceExperiment" => stop(&mut world, &body),
        "AddTags" | "DeleteTags" => tag(&mut world, op, &body),
        other => {
            world
                .violations
                .push(format!("unexpected operation {other}"));
            sagemaker_error("UnknownOperationException", other)
        }
    }
}

/// EventBridge PutEvents: 1 to 10 entries, each with Source, DetailType
/// and a Detail that is a JSON object, as the API requires.
fn put_events(world: &mut World, request: &Recorded) -> Reply {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let entries = body["Entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() || entries.len() > 10 {
        world
            .violations
            .push(format!("PutEvents with {} entries", entries.len()));
        return sagemaker_error("ValidationException", "1 to 10 entries");
    }
    for entry in &entries {
        let detail_is_object = entry["Detail"]
            .as_str()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .is_some_and(|d| d.is_object());
        if entry["Source"].as_str().is_none()
            || entry["DetailType"].as_str().is_none()
            || !detail_is_object
        {
            world.violations.push(format!("PutEvents entry {entry}"));
        }
    }
    let answered: Vec<Value> = (0..entries.len())
        .map(|i| json!({"EventId": format!("event-{}", world.events.len() + i)}))
        .collect();
    world.events.extend(entries);
    Reply::json(200, &json!({"FailedEntryCount": 0, "Entries": answered}))
}

/// AddTags and DeleteTags on an experiment's ARN. shadowpilot may only
/// write its own `shadowpilot:` keys (the IAM condition), so any other key
/// is a violation.
fn tag(world: &mut World, op: &str, body: &Value) -> Reply {
    let arn = body["ResourceArn"].as_str().unwrap_or_default().to_string();
    let Some(index) = world.experiments.iter().position(|e| e.arn() == arn) else {
        world.violations.push(format!("{op} for unknown {arn}"));
        return sagemaker_error("ValidationException", format!("{arn} not found"));
    };
    let keys: Vec<String> = if op == "AddTags" {
        body["Tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["Key"].as_str().unwrap_or_default().to_string())
            .collect()
    } else {
        body["TagKeys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k.as_str().unwrap_or_default().to_string())
            .collect()
    };
    if let Some(foreign) = keys.iter().find(|k| !k.starts_with("shadowpilot:")) {
        world
            .violations
            .push(format!("{op} of a key shadowpilot does not own: {foreign}"));
        return sagemaker_error("AccessDeniedException", format!("not allowed: {foreign}"));
    }
    let experiment = &mut world.experiments[index];
    if op == "AddTags" {
        for tag in body["Tags"].as_array().into_iter().flatten() {
            let key = tag["Key"].as_str().unwrap_or_default().to_string();
            let value = tag["Value"].as_str().unwrap_or_default().to_string();
            experiment.tags.retain(|(k, _)| *k != key);
            experiment.tags.push((key, value));
        }
        Reply::json(200, &json!({ "Tags": body["Tags"] }))
    } else {
        experiment.tags.retain(|(k, _)| !keys.contains(k));
        Reply::json(200, &json!({}))
    }
}

fn list(world: &mut World, body: &Value) -> Reply {
    if body["Type"] != "ShadowMode" {
        world
            .violations
            .push(format!("List without Type=ShadowMode: {body}"));
    }
    let asked = body["MaxResults"].as_u64().unwrap_or(10) as usize;
    let page_size = asked.min(world.options.list_page_size).max(1);
    let from: usize = match body.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(from) => from,
            None => {
                world.violations.push(format!("bad NextToken {token}"));
                return sagemaker_error("ValidationException", "bad NextToken");
            }
        },
    };
    let rows: Vec<Value> = world
        .experiments
        .iter()
        .skip(from)
        .take(page_size)
        .map(FakeExperiment::summary)
        .collect();
    let mut page = json!({ "InferenceExperiments": rows });
    if from + page_size < world.experiments.len() {
        page["NextToken"] = json!(format!("page-{}", from + page_size));
    }
    Reply::json(200, &page)
}

/// Applies an update the way SageMaker documents it: Running accepts a new
/// EndTime and sampling; the whole ShadowModeConfig must come with a
/// sampling change; EndTime at most 30 days after StartTime.
/// StopInferenceExperiment as the API model has it: a Running experiment,
/// ModelVariantActions naming its two variants (Promote only for the
/// shadow), DesiredState Completed or Cancelled, a Reason of at most 1024
/// characters, nothing else. The experiment is then Stopping.
fn stop(world: &mut World, body: &Value) -> Reply {
    let name = body["Name"].as_str().unwrap_or_default().to_string();
    let Some(index) = world.experiments.iter().position(|e| e.name == name) else {
        return sagemaker_error("ResourceNotFound", format!("{name} not found"));
    };
    let refuse = |world: &mut World, kind: &str, message: String| {
        world.violations.push(format!("{name}: {message}"));
        sagemaker_error(kind, message)
    };
    let experiment = world.experiments[index].clone();
    if experiment.status != "Running" {
        return refuse(
            world,
            "ConflictException",
            format!("cannot stop in status {}", experiment.status),
        );
    }
    for key in body.as_object().map(|o| o.keys()).into_iter().flatten() {
        if !["Name", "ModelVariantActions", "DesiredState", "Reason"].contains(&key.as_str()) {
            return refuse(world, "ValidationException", format!("unexpected {key}"));
        }
    }
    let actions = body["ModelVariantActions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut named: Vec<&str> = actions.keys().map(String::as_str).collect();
    named.sort_unstable();
    let mut variants = vec![
        experiment.production_variant.as_str(),
        experiment.shadow_variant.as_str(),
    ];
    variants.sort_unstable();
    if named != variants {
        return refuse(
            world,
            "ValidationException",
            format!("ModelVariantActions names {named:?}"),
        );
    }
    for (variant, action) in &actions {
        let valid = match action.as_str() {
            Some("Promote") => *variant == experiment.shadow_variant,
            Some("Remove" | "Retain") => true,
            _ => false,
        };
        if !valid {
            return refuse(world, "ValidationException", format!("{variant}: {action}"));
        }
    }
    if !matches!(
        body["DesiredState"].as_str(),
        Some("Completed" | "Cancelled")
    ) {
        return refuse(
            world,
            "ValidationException",
            format!("DesiredState {}", body["DesiredState"]),
        );
    }
    if body["Reason"].as_str().map_or(0, |r| r.chars().count()) > 1024 {
        return refuse(
            world,
            "ValidationException",
            "Reason longer than 1024".into(),
        );
    }
    world.experiments[index].status = "Stopping".into();
    Reply::json(200, &json!({ "InferenceExperimentArn": experiment.arn() }))
}

fn update(world: &mut World, body: &Value) -> Reply {
    let name = body["Name"].as_str().unwrap_or_default().to_string();
    let Some(index) = world.experiments.iter().position(|e| e.name == name) else {
        return sagemaker_error("ResourceNotFound", format!("{name} not found"));
    };
    let refuse = |world: &mut World, kind: &str, message: String| {
        world.violations.push(format!("{name}: {message}"));
        sagemaker_error(kind, message)
    };
    let experiment = world.experiments[index].clone();
    if experiment.status != "Running" && experiment.status != "Created" {
        return refuse(
            world,
            "ConflictException",
            format!("cannot update in status {}", experiment.status),
        );
    }
    for key in body.as_object().map(|o| o.keys()).into_iter().flatten() {
        if !["Name", "Schedule", "ShadowModeConfig", "Description"].contains(&key.as_str()) {
            return refuse(
                world,
                "ValidationException",
                format!("{key} may not change while {}", experiment.status),
            );
        }
    }
    let mut changed = experiment.clone();
    if let Some(config) = body.get("ShadowModeConfig") {
        if config["SourceModelVariantName"] != experiment.production_variant.as_str() {
            return refuse(
                world,
                "ValidationException",
                format!(
                    "SourceModelVariantName {}",
                    config["SourceModelVariantName"]
                ),
            );
        }
        let shadows = config["ShadowModelVariants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let [shadow] = shadows.as_slice() else {
            return refuse(
                world,
                "ValidationException",
                format!("{} shadow variants, exactly one allowed", shadows.len()),
            );
        };
        if shadow["ShadowModelVariantName"] != experiment.shadow_variant.as_str() {
            return refuse(
                world,
                "ValidationException",
                format!(
                    "ShadowModelVariantName {}",
                    shadow["ShadowModelVariantName"]
                ),
            );
        }
        match shadow["SamplingPercentage"].as_i64() {
            Some(p) if (1..=100).contains(&p) => changed.sampling = p,
            other => {
                return refuse(
                    world,
                    "ValidationException",
                    format!("SamplingPercentage {other:?}"),
                )
            }
        }
    }
    if let Some(schedule) = body.get("Schedule") {
        if schedule.get("StartTime").is_some() && experiment.status == "Running" {
            return refuse(
                world,
                "ValidationException",
                "StartTime of a Running experiment".into(),
            );
        }
        if let Some(end) = schedule.get("EndTime") {
            let Some(end) = end.as_f64() else {
                return refuse(world, "ValidationException", format!("EndTime {end}"));
            };
            if end > experiment.start_time + 30.0 * DAY || end < epoch_now() {
                return refuse(
                    world,
                    "ValidationException",
                    format!("EndTime {end} outside now..StartTime + 30 d"),
                );
            }
            changed.end_time = end;
        }
    }
    changed.last_modified = epoch_now();
    let arn = changed.arn();
    world.experiments[index] = changed;
    Reply::json(200, &json!({ "InferenceExperimentArn": arn }))
}

fn cbor_error(kind: &str, message: &str) -> Reply {
    let mut body = Cbor::default();
    body.map(2)
        .text("__type")
        .text(kind)
        .text("message")
        .text(message);
    Reply::cbor(400, body.0)
}

fn get_metric_data(world: &mut World, request: &Recorded) -> Reply {
    let call = cbor_to_json(&request.body);
    let refuse = |world: &mut World, message: String| {
        world.violations.push(format!("GetMetricData: {message}"));
        cbor_error("InvalidParameterValueException", &message)
    };
    let queries = call["MetricDataQueries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if queries.is_empty() || queries.len() > 500 {
        return refuse(world, format!("{} queries in one call", queries.len()));
    }
    let (Some(start), Some(end)) = (
        call["StartTime"]["$epoch"].as_f64(),
        call["EndTime"]["$epoch"].as_f64(),
    ) else {
        return refuse(world, format!("StartTime/EndTime missing: {call}"));
    };
    if start >= end {
        return refuse(world, format!("StartTime {start} not before EndTime {end}"));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut results = Vec::new();
    for query in &queries {
        let id = query["Id"].as_str().unwrap_or_default().to_string();
        let valid_id = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_id || !ids.insert(id.clone()) {
            return refuse(world, format!("query id {id:?} invalid or repeated"));
        }
        let stat = &query["MetricStat"];
        let period = stat["Period"].as_i64().unwrap_or(0);
        if period <= 0 || period % 60 != 0 {
            return refuse(world, format!("{id}: Period {period}"));
        }
        if stat["Metric"]["Namespace"] != "AWS/SageMaker" {
            return refuse(
                world,
                format!("{id}: Namespace {}", stat["Metric"]["Namespace"]),
            );
        }
        let metric = stat["Metric"]["MetricName"].as_str().unwrap_or_default();
        let statistic = stat["Stat"].as_str().unwrap_or_default();
        let endpoint = dimension(query, "EndpointName").unwrap_or_default();
        let variant = dimension(query, "VariantName").unwrap_or_default();
        let profile = world
            .experiments
            .iter()
            .find(|e| e.endpoint == endpoint)
            .and_then(|e| {
                if variant == e.production_variant {
                    Some(e.production)
                } else if variant == e.shadow_variant {
                    Some(e.shadow)
                } else {
                    None
                }
            });
        let value = profile.and_then(|p| p.value(metric, statistic));
        // One datapoint per whole period that has ended, counts scaled to
        // the period: the profile's numbers are per hour.
        let now = epoch_now();
        let mut points = Vec::new();
        if let Some(value) = value {
            let scale = if matches!(statistic, "Sum" | "SampleCount") {
                period as f64 / 3600.0
            } else {
                1.0
            };
            let mut at = start;
            while at + period as f64 <= end.min(now) {
                points.push((at as u64, value * scale));
                at += period as f64;
            }
        }
        results.push((id, points));
    }

    let mut body = Cbor::default();
    body.map(1).text("MetricDataResults").array(results.len());
    for (id, value) in results {
        body.map(5)
            .text("Id")
            .text(&id)
            .text("Label")
            .text(&id)
            .text("StatusCode")
            .text("Complete");
        body.text("Timestamps").array(value.len());
        for (at, _) in &value {
            body.epoch(*at);
        }
        body.text("Values").array(value.len());
        for (_, v) in &value {
            body.f64(*v);
        }
    }
    if let Some(mutation) = world.after_metrics.take() {
        mutation(&mut world.experiments);
    }
    Reply::cbor(200, body.0)
}

// -------------------------------------------------------------------- S3

#[derive(Default)]
struct S3World {
    buckets: BTreeSet<String>,
    /// (bucket, key) → bytes; S3 lists keys in this (byte) order.
    objects: BTreeMap<(String, String), Vec<u8>>,
    denied: Vec<S3Denial>,
}

struct S3Denial {
    bucket: String,
    /// `None`: every request on the bucket.
    key: Option<String>,
    /// Refused for want of kms:Decrypt rather than S3 permissions.
    kms: bool,
}

/// One S3 request as the fake understood it: path-style, so the bucket is
/// the first segment of the path and the key the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    pub method: String,
    /// As S3 names the call: `ListObjectsV2`, `GetObject`, `ListObjects`
    /// (v1), `HeadObject`, else the method.
    pub operation: String,
    /// The first path segment, decoded; empty when the path has none (a
    /// virtual-hosted-style request puts the bucket in Host instead).
    pub bucket: String,
    /// The rest of the path, decoded; `None` for bucket-level calls.
    pub key: Option<String>,
    /// The query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// The Host header as sent.
    pub host: String,
    /// The request target as sent: path and query, still encoded.
    pub path: String,
}

impl S3Request {
    /// `None` for requests to the other services: those carry an
    /// X-Amz-Target (SageMaker, EventBridge) or CloudWatch's RPC v2 path.
    pub fn parse(request: &Recorded) -> Option<Self> {
        if request.header("x-amz-target").is_some()
            || request
                .path
                .starts_with("/service/GraniteServiceVersion20100801/")
        {
            return None;
        }
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let path = path.strip_prefix('/')?;
        let (bucket, key) = match path.split_once('/') {
            Some((bucket, key)) if !key.is_empty() => (bucket, Some(percent_decode(key))),
            Some((bucket, _)) => (bucket, None),
            None => (path, None),
        };
        let query: BTreeMap<String, String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name), percent_decode(value))
            })
            .collect();
        let operation = match (request.method.as_str(), &key) {
            ("GET", None) if query.get("list-type").map(String::as_str) == Some("2") => {
                "ListObjectsV2"
            }
            ("GET", None) => "ListObjects",
            ("GET", Some(_)) => "GetObject",
            ("HEAD", Some(_)) => "HeadObject",
            (method, _) => method,
        }
        .to_string();
        Some(Self {
            method: request.method.clone(),
            operation,
            bucket: percent_decode(bucket),
            key,
            query,
            host: request.header("host").unwrap_or_default().to_string(),
            path: request.path.clone(),
        })
    }

    /// ListObjectsV2's `prefix`, empty when absent.
    pub fn prefix(&self) -> &str {
        self.query.get("prefix").map_or("", String::as_str)
    }

    pub fn continuation_token(&self) -> Option<&str> {
        self.query.get("continuation-token").map(String::as_str)
    }
}

/// `%XX` decoded; anything else kept (S3 reads `+` as itself).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// For `encoding-type=url`: everything but unreserved characters and `/`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Continuation tokens are opaque to the client: the last key listed, in
/// hex, so a token the fake did not hand out is recognised.
fn token_of(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn key_of(token: &str) -> Option<String> {
    if token.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn s3_error(status: u16, code: &str, message: &str, resource: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>FAKE0000000000</RequestId><HostId>fake-s3</HostId></Error>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(resource)
    );
    Reply {
        status,
        headers: vec![
            ("content-type", "application/xml".into()),
            ("x-amz-request-id", "FAKE0000000000".into()),
        ],
        body: body.into_bytes(),
    }
}

fn s3_answer(world: &mut World, s3: &S3Request) -> Reply {
    let resource = match &s3.key {
        Some(key) => format!("/{}/{key}", s3.bucket),
        None => format!("/{}", s3.bucket),
    };
    if s3.host != world.host || s3.bucket.is_empty() {
        world.violations.push(format!(
            "S3 {} not path-style: Host {:?}, path {:?} (expected Host {:?} and /bucket/...)",
            s3.operation, s3.host, s3.path, world.host
        ));
        return s3_error(400, "InvalidRequest", "path-style requests only", &resource);
    }
    if !matches!(s3.operation.as_str(), "ListObjectsV2" | "GetObject") {
        world
            .violations
            .push(format!("unexpected S3 {} {}", s3.operation, s3.path));
        return s3_error(501, "NotImplemented", &s3.operation, &resource);
    }
    let denial = world.s3.denied.iter().find(|d| {
        d.bucket == s3.bucket
            && (d.key.is_none() || (s3.operation == "GetObject" && d.key == s3.key))
    });
    if let Some(denial) = denial {
        let message = if denial.kms {
            format!(
                "User: arn:aws:sts::{ACCOUNT}:assumed-role/shadowpilot/shadowpilot is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:Decrypt action"
            )
        } else {
            "Access Denied".to_string()
        };
        return s3_error(403, "AccessDenied", &message, &resource);
    }
    if !world.s3.buckets.contains(&s3.bucket) {
        return s3_error(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist",
            &resource,
        );
    }
    match &s3.key {
        None => list_objects_v2(world, s3),
        Some(key) => match world.s3.objects.get(&(s3.bucket.clone(), key.clone())) {
            None => s3_error(404, "NoSuchKey", "The specified key does not exist.", key),
            Some(bytes) => Reply {
                status: 200,
                headers: vec![
                    ("content-type", "application/octet-stream".into()),
                    (
                        "etag",
                        format!("\"{}\"", token_of(&bytes.len().to_string())),
                    ),
                    ("accept-ranges", "bytes".into()),
                ],
                body: bytes.clone(),
            },
        },
    }
}

/// ListObjectsV2 of one page: keys under `prefix` after the continuation
/// token (or start-after), at most the page size, in key order.
fn list_objects_v2(world: &mut World, s3: &S3Request) -> Reply {
    for unsupported in ["delimiter", "fetch-owner"] {
        if s3.query.contains_key(unsupported) {
            world
                .violations
                .push(format!("ListObjectsV2 with {unsupported}: {}", s3.path));
        }
    }
    let asked = match s3.query.get("max-keys") {
        None => 1000,
        Some(n) => match n.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                world.violations.push(format!("max-keys {n:?}"));
                return s3_error(400, "InvalidArgument", "max-keys", &s3.bucket);
            }
        },
    };
    let page_size = asked.min(world.options.s3_page_size).max(1);
    let after = match s3.continuation_token() {
        Some(token) => match key_of(token) {
            Some(key) => Some(key),
            None => {
                world
                    .violations
                    .push(format!("unknown continuation-token {token:?}"));
                return s3_error(
                    400,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                    &s3.bucket,
                );
            }
        },
        None => s3.query.get("start-after").cloned(),
    };
    let prefix = s3.prefix();
    let matching: Vec<(&String, usize)> = world
        .s3
        .objects
        .iter()
        .filter(|((bucket, key), _)| {
            *bucket == s3.bucket
                && key.starts_with(prefix)
                && after.as_ref().is_none_or(|after| key > after)
        })
        .map(|((_, key), bytes)| (key, bytes.len()))
        .collect();
    let page = &matching[..matching.len().min(page_size)];
    let truncated = matching.len() > page.len();
    let url = s3.query.get("encoding-type").map(String::as_str) == Some("url");
    let encode = |text: &str| {
        if url {
            percent_encode(text)
        } else {
            xml_escape(text)
        }
    };
    let mut body = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    body.push_str(&format!(
        "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{asked}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        xml_escape(&s3.bucket),
        encode(prefix),
        page.len()
    ));
    if url {
        body.push_str("<EncodingType>url</EncodingType>");
    }
    if let Some(token) = s3.continuation_token() {
        body.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml_escape(token)
        ));
    }
    if let (true, Some((last, _))) = (truncated, page.last()) {
        body.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            token_of(last)
        ));
    }
    for (key, size) in page {
        body.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>2026-03-02T10:00:00.000Z</LastModified><ETag>&quot;{}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            encode(key),
            token_of(&size.to_string())
        ));
    }
    body.push_str("</ListBucketResult>");
    Reply {
        status: 200,
        headers: vec![("content-type", "application/xml".into())],
        body: body.into_bytes(),
    }
}

// ------------------------------------------------------- data capture files

/// One line of SageMaker data capture (JSON Lines) in the documented
/// record format (model-monitor-data-capture-endpoint.md): a CSV input, a
/// JSON output, the event's metadata with whole-second inferenceTime;
/// `inferenceId` only when the caller sent one.
pub fn capture_line(
    inference_id: Option<&str>,
    event_id: &str,
    inference_time: f64,
    input_csv: &str,
    output: &Value,
) -> String {
    let mut metadata = json!({
        "eventId": event_id,
        "inferenceTime": capture_time(inference_time),
    });
    if let Some(id) = inference_id {
        metadata["inferenceId"] = json!(id);
    }
    json!({
        "captureData": {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": input_csv,
                "encoding": "CSV"
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": output.to_string(),
                "encoding": "JSON"
            }
        },
        "eventMetadata": metadata,
        "eventVersion": "0"
    })
    .to_string()
}

fn utc(epoch: f64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(epoch.floor() as i64, 0).expect("a time in range")
}

/// `2026-03-02T10:00:01Z`, as capture writes inferenceTime.
pub fn capture_time(epoch: f64) -> String {
    utc(epoch).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `yyyy/mm/dd/hh`: the folder of the hour `epoch` falls in, under
/// `{destination}/{endpoint}/{variant}/`.
pub fn capture_hour(epoch: f64) -> String {
    utc(epoch).format("%Y/%m/%d/%H").to_string()
}

// ------------------------------------------------- the Lambda Runtime API

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct RuntimeState {
    queue: VecDeque<(String, Value)>,
    outcomes: HashMap<String, Outcome>,
    init_errors: Vec<Value>,
    /// When each invocation was handed out, to time it.
    handed_out: HashMap<String, Instant>,
    answered_at: HashMap<String, Instant>,
    next_polls: usize,
    closed: bool,
    /// How long after it is handed out an invocation times out; Lambda
    /// sends it as `Lambda-Runtime-Deadline-Ms`. Default 900 s.
    deadline_after: Option<Duration>,
}

/// The Lambda Runtime API (`/2018-06-01/runtime/...`) as the Lambda service
/// offers it to a custom runtime.
pub struct FakeRuntime {
    server: Server,
    state: Arc<(Mutex<RuntimeState>, Condvar)>,
    counter: Mutex<u32>,
}

pub const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:shadowpilot";

impl FakeRuntime {
    pub fn start() -> Self {
        let state = Arc::new((Mutex::new(RuntimeState::default()), Condvar::new()));
        let shared = state.clone();
        let server = Server::start(move |request| runtime_answer(&shared, request));
        Self {
            server,
            state,
            counter: Mutex::new(0),
        }
    }

    /// `host:port`, the form AWS_LAMBDA_RUNTIME_API takes.
    pub fn address(&self) -> &str {
        self.server
            .url
            .strip_prefix("http://")
            .expect("an http URL")
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Invocations handed out from now on time out `after` that.
    pub fn set_deadline(&self, after: Duration) {
        self.state.0.lock().expect("not poisoned").deadline_after = Some(after);
    }

    /// Queues one invocation; returns its request id.
    pub fn invoke(&self, event: Value) -> String {
        let id = {
            let mut counter = self.counter.lock().expect("not poisoned");
            *counter += 1;
            format!("e2e-request-{:04}", *counter)
        };
        let (lock, ready) = &*self.state;
        lock.lock()
            .expect("not poisoned")
            .queue
            .push_back((id.clone(), event));
        ready.notify_all();
        id
    }

    /// Waits for the function's answer to `id`.
    pub fn outcome(&self, id: &str, timeout: Duration) -> Option<Outcome> {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().expect("not poisoned");
        loop {
            if let Some(outcome) = state.outcomes.get(id) {
                return Some(outcome.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = changed.wait_timeout(state, left).expect("not poisoned").0;
        }
    }

    /// From the moment the function took the invocation to its answer.
    pub fn duration(&self, id: &str) -> Option<Duration> {
        let state = self.state.0.lock().expect("not poisoned");
        Some(*state.answered_at.get(id)? - *state.handed_out.get(id)?)
    }

    /// How many times the function asked for its next invocation.
    pub fn next_polls(&self) -> usize {
        self.state.0.lock().expect("not poisoned").next_polls
    }

    /// Waits until the function polls for work at least `n` times.
    pub fn wait_for_polls(&self, n: usize, timeout: Duration) -> bool {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().expect("not poisoned");
        while state.next_polls < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = changed.wait_timeout(state, left).expect("not poisoned").0;
        }
        true
    }

    pub fn init_errors(&self) -> Vec<Value> {
        self.state
            .0
            .lock()
            .expect("not poisoned")
            .init_errors
            .clone()
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        let (lock, changed) = &*self.state;
        if let Ok(mut state) = lock.lock() {
            state.closed = true;
        }
        changed.notify_all();
    }
}

fn runtime_answer(shared: &(Mutex<RuntimeState>, Condvar), request: &Recorded) -> Reply {
    let (lock, changed) = shared;
    let accepted = || Reply::json(202, &json!({"status": "OK"}));
    let path = request.path.as_str();
    if request.method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
        let mut state = lock.lock().expect("not poisoned");
        state.next_polls += 1;
        changed.notify_all();
        // Long poll, as Lambda does: the answer comes when there is work.
        loop {
            if let Some((id, event)) = state.queue.pop_front() {
                state.handed_out.insert(id.clone(), Instant::now());
                let after = state.deadline_after.unwrap_or(Duration::from_secs(900));
                let deadline_ms = (epoch_now() * 1000.0) as u64 + after.as_millis() as u64;
                return Reply {
                    status: 200,
                    headers: vec![
                        ("content-type", "application/json".into()),
                        ("lambda-runtime-aws-request-id", id),
                        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                        ("lambda-runtime-invoked-function-arn", FUNCTION_ARN.into()),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into(),
                        ),
                    ],
                    body: event.to_string().into_bytes(),
                };
            }
            if state.closed {
                return Reply {
                    status: 410,
                    headers: vec![],
                    body: vec![],
                };
            }
            state = changed
                .wait_timeout(state, Duration::from_millis(200))
                .expect("not poisoned")
                .0;
        }
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    if request.method == "POST" && path == "/2018-06-01/runtime/init/error" {
        let mut state = lock.lock().expect("not poisoned");
        state.init_errors.push(body);
        changed.notify_all();
        return accepted();
    }
    if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
        if let Some((id, kind)) = rest.split_once('/') {
            let outcome = match kind {
                "response" => Some(Outcome::Response(body)),
                "error" => Some(Outcome::Error(body)),
                _ => None,
            };
            if let (Some(outcome), "POST") = (outcome, request.method.as_str()) {
                let mut state = lock.lock().expect("not poisoned");
                state.answered_at.insert(id.to_string(), Instant::now());
                state.outcomes.insert(id.to_string(), outcome);
                changed.notify_all();
                return accepted();
            }
        }
    }
    Reply::json(
        404,
        &json!({"errorType": "NotFound", "errorMessage": format!("{} {path}", request.method)}),
    )
}

// ------------------------------------------------------- child processes

/// The environment Lambda gives a `provided.al2023` function (lambda_runtime
/// 1.x `Config::from_env` needs the first four), on top of
/// [`hermetic_command`].
pub fn lambda_command(
    program: impl AsRef<Path>,
    runtime: &FakeRuntime,
    aws: &FakeAws,
    log_stream: &str,
) -> Command {
    let mut command = hermetic_command(program, aws.url());
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "shadowpilot")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/shadowpilot");
    command
}

/// A command with nothing from the test's own environment: no profile, no
/// credentials file, no instance metadata; every AWS call goes to `aws_url`.
pub fn hermetic_command(program: impl AsRef<Path>, aws_url: &str) -> Command {
    let mut command = Command::new(program.as_ref());
    command
        .env_clear()
        .env("AWS_ENDPOINT_URL", aws_url)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIDE2ETEST")
        .env("AWS_SECRET_ACCESS_KEY", "e2e-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/e2e/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/e2e/aws-credentials",
        )
        .env("SHADOWPILOT_SCHEDULE", "rate(10 minutes)")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running child whose output is collected line by line; killed when
/// dropped, so a failing test never leaves it polling.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => into.lock().expect("not poisoned").push(line),
                Err(_) => break,
            }
        }
    })
}

impl Running {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("the binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped"), stdout.clone()),
            collect(child.stderr.take().expect("piped"), stderr.clone()),
        ];
        Self {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("not poisoned").clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("not poisoned").clone()
    }

    /// Waits for the exit; `None` if it is still running after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes close with the process: drain what is left.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the child (if still running) and collects its output.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.wait_timeout(Duration::from_secs(10));
    }

    /// `VmHWM` (peak resident set) and `VmRSS` of the running child, in kB.
    pub fn memory_kb(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished CLI run printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not one JSON document ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs a command to completion within [`WAIT`]; a hang fails the test.
pub fn run_to_end(command: Command) -> Finished {
    let mut running = Running::spawn(command);
    let status = running.wait_timeout(WAIT).unwrap_or_else(|| {
        running.kill();
        panic!(
            "still running after {WAIT:?}; stdout: {:?}; stderr: {:?}",
            running.stdout(),
            running.stderr()
        )
    });
    Finished {
        status,
        stdout: running.stdout().join("\n"),
        stderr: running.stderr().join("\n"),
    }
}

/// The report's entry for one experiment.
pub fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["experiments"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no entry for {name} in {report:#}"))
}

/// Sorted map of operation → count, for readable assertion failures.
pub fn tally(operations: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for op in operations {
        *counts.entry(op.clone()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    //! The S3 stand-in over real HTTP, as the SDK reaches it.
    use super::*;
    use std::io::Write;
    use std::net::TcpStream;

    struct Answer {
        status: u16,
        body: String,
    }

    /// One request on its own connection, with `host` as the Host header.
    fn send(fake: &FakeAws, method: &str, target: &str, host: Option<&str>, body: &str) -> Answer {
        let address = fake.url().trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("the fake listens");
        let host = host.unwrap_or(address);
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\n",
            body.len()
        );
        if method == "POST" {
            request.push_str("x-amz-target: SageMaker.DescribeInferenceExperiment\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).expect("sent");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-closed");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("an answer");
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_string();
        Answer { status, body }
    }

    fn get(fake: &FakeAws, target: &str) -> Answer {
        send(fake, "GET", target, None, "")
    }

    /// The text of every `<tag>` element, in order.
    fn elements(xml: &str, tag: &str) -> Vec<String> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        xml.split(&open)
            .skip(1)
            .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text.to_string()))
            .collect()
    }

    fn fake_with_objects() -> FakeAws {
        let fake = FakeAws::start(vec![]);
        for n in 0..5 {
            fake.put_object(
                "capture",
                &format!("p/e/v/2026/03/02/10/{n:02}.jsonl"),
                format!("{n}"),
            );
        }
        fake.put_object("capture", "p/e/v/2026/03/02/11/a&b.jsonl", "amp");
        fake.put_object("capture", "q/outside.jsonl", "no");
        fake
    }

    #[test]
    fn list_objects_v2_pages_by_the_page_size_and_follows_its_tokens() {
        let fake = fake_with_objects();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut target = "/capture?list-type=2&prefix=p%2Fe%2Fv%2F".to_string();
            if let Some(token) = &token {
                target.push_str(&format!("&continuation-token={token}"));
            }
            let answer = get(&fake, &target);
            assert_eq!(answer.status, 200, "{}", answer.body);
            pages += 1;
            let page = elements(&answer.body, "Key");
            assert!(page.len() <= 2, "{}", answer.body);
            assert_eq!(
                elements(&answer.body, "Size").len(),
                page.len(),
                "every key has a Size"
            );
            keys.extend(page);
            let truncated = elements(&answer.body, "IsTruncated");
            token = elements(&answer.body, "NextContinuationToken").pop();
            assert_eq!(truncated, [token.is_some().to_string()], "{}", answer.body);
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..5)
            .map(|n| format!("p/e/v/2026/03/02/10/{n:02}.jsonl"))
            .chain(["p/e/v/2026/03/02/11/a&amp;b.jsonl".to_string()])
            .collect();
        assert_eq!(
            keys, expected,
            "in key order, escaped, nothing outside the prefix"
        );
        let requests = fake.s3_requests();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|r| r.operation == "ListObjectsV2"
            && r.bucket == "capture"
            && r.prefix() == "p/e/v/"));
        assert_eq!(requests[0].continuation_token(), None);
        assert!(requests[1].continuation_token().is_some());
        assert_eq!(fake.violations(), Vec::<String>::new());
        assert_eq!(fake.operations()[0], "S3.ListObjectsV2");
    }

    #[test]
    fn get_object_answers_the_bytes_or_s3s_errors() {
        let fake = fake_with_objects();
        let ok = get(
            &fake,
            "/capture/p/e/v/2026/03/02/11/a%26b.jsonl?x-id=GetObject",
        );
        assert_eq!((ok.status, ok.body.as_str()), (200, "amp"));
        let missing = get(&fake, "/capture/p/none.jsonl");
        assert_eq!(missing.status, 404);
        assert_eq!(elements(&missing.body, "Code"), ["NoSuchKey"]);
        let no_bucket = get(&fake, "/elsewhere?list-type=2&prefix=p%2F");
        assert_eq!(no_bucket.status, 404);
        assert_eq!(elements(&no_bucket.body, "Code"), ["NoSuchBucket"]);

        fake.deny_object("capture", "p/e/v/2026/03/02/10/01.jsonl");
        fake.deny_decrypt("capture", "p/e/v/2026/03/02/10/02.jsonl");
        let denied = get(&fake, "/capture/p/e/v/2026/03/02/10/01.jsonl");
        assert_eq!(denied.status, 403);
        assert_eq!(elements(&denied.body, "Code"), ["AccessDenied"]);
        let sealed = get(&fake, "/capture/p/e/v/2026/03/02/10/02.jsonl");
        assert_eq!(sealed.status, 403);
        assert!(sealed.body.contains("kms:Decrypt"), "{}", sealed.body);
        // An object denial leaves the listing and the other objects alone.
        assert_eq!(get(&fake, "/capture?list-type=2").status, 200);
        assert_eq!(
            get(&fake, "/capture/p/e/v/2026/03/02/10/00.jsonl").body,
            "0"
        );
        fake.deny_bucket("capture");
        assert_eq!(get(&fake, "/capture?list-type=2").status, 403);
        assert_eq!(get(&fake, "/capture/q/outside.jsonl").status, 403);
        assert_eq!(fake.violations(), Vec::<String>::new());
    }

    #[test]
    fn virtual_hosted_requests_and_foreign_tokens_are_violations() {
        let fake = fake_with_objects();
        let host = format!("capture.{}", fake.url().trim_start_matches("http://"));
        let answer = send(&fake, "GET", "/?list-type=2&prefix=p%2F", Some(&host), "");
        assert_eq!(answer.status, 400);
        let bad = get(&fake, "/capture?list-type=2&continuation-token=not-ours");
        assert_eq!(bad.status, 400);
        let v1 = get(&fake, "/capture?prefix=p%2F");
        assert_eq!(v1.status, 501);
        let violations = fake.violations();
        assert_eq!(violations.len(), 3, "{violations:#?}");
        assert!(violations[0].contains("not path-style"), "{violations:#?}");
        assert_eq!(fake.s3_requests()[0].host, host);
    }

    #[test]
    fn describe_answers_the_capture_config_the_test_set() {
        let fake = FakeAws::start(vec![
            FakeExperiment::new("sealed").capture("s3://b/p", Some("alias/capture")),
            FakeExperiment::new("plain"),
            FakeExperiment::new("none").without_capture(),
        ]);
        let describe = |name: &str| {
            let answer = send(
                &fake,
                "POST",
                "/",
                None,
                &json!({ "Name": name }).to_string(),
            );
            assert_eq!(answer.status, 200, "{}", answer.body);
            serde_json::from_str::<Value>(&answer.body).expect("JSON")["DataStorageConfig"].clone()
        };
        let sealed = describe("sealed");
        assert_eq!(sealed["Destination"], "s3://b/p");
        assert_eq!(sealed["KmsKey"], "alias/capture");
        let plain = describe("plain");
        assert_eq!(plain["Destination"], "s3://captures/plain/");
        assert_eq!(plain.get("KmsKey"), None);
        assert_eq!(describe("none"), Value::Null);
    }

    #[test]
    fn capture_lines_are_records_of_the_documented_format() {
        let at = 1_772_445_601.0; // 2026-03-02T10:00:01Z
        let line: Value = serde_json::from_str(&capture_line(
            Some("req-1"),
            "e-1",
            at,
            "1,2,3",
            &json!({"label": 1}),
        ))
        .expect("one JSON object");
        assert_eq!(line["eventMetadata"]["inferenceId"], "req-1");
        assert_eq!(
            line["eventMetadata"]["inferenceTime"],
            "2026-03-02T10:00:01Z"
        );
        assert_eq!(
            line["captureData"]["endpointOutput"]["data"],
            "{\"label\":1}"
        );
        assert_eq!(line["captureData"]["endpointInput"]["encoding"], "CSV");
        assert_eq!(capture_hour(at), "2026/03/02/10");
        let anonymous: Value =
            serde_json::from_str(&capture_line(None, "e-2", at, "", &json!(0))).expect("JSON");
        assert_eq!(anonymous["eventMetadata"].get("inferenceId"), None);
    }
}
