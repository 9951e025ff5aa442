//! The S3 capture adapter against mocked S3 clients: the exact requests
//! (bucket, prefix, pagination), bodies within the byte limit, and S3's and
//! KMS's refusals told apart.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::list_objects_v2::{
    ListObjectsV2Error, ListObjectsV2Input, ListObjectsV2Output,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::Object;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::error::ErrorMetadata;

use shadowpilot_aws::S3Capture;
use shadowpilot_core::ports::{CaptureError, CaptureSource};

const BUCKET: &str = "churn-capture";
const PREFIX: &str = "shadow-tests/churn-endpoint/shadow/2026/03/02/10/";

fn object(key: &str, size: i64) -> Object {
    Object::builder().key(key).size(size).build()
}

#[tokio::test]
async fn list_follows_every_page_of_the_prefix() {
    let seen: Arc<Mutex<Vec<ListObjectsV2Input>>> = Arc::default();
    let (first_seen, second_seen) = (seen.clone(), seen.clone());
    let first = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|req| req.continuation_token().is_none())
        .then_compute_output(move |req| {
            first_seen.lock().unwrap().push(req.clone());
            ListObjectsV2Output::builder()
                .contents(object(&format!("{PREFIX}00-01-000-a.jsonl"), 120))
                .contents(object(&format!("{PREFIX}00-02-000-b.jsonl"), 80))
                .is_truncated(true)
                .next_continuation_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|req| req.continuation_token() == Some("page-2"))
        .then_compute_output(move |req| {
            second_seen.lock().unwrap().push(req.clone());
            ListObjectsV2Output::builder()
                .contents(object(&format!("{PREFIX}00-03-000-c.jsonl"), 40))
                .is_truncated(false)
                .build()
        });
    let s3 = S3Capture::new(mock_client!(
        aws_sdk_s3,
        RuleMode::MatchAny,
        [&first, &second]
    ));

    let objects = s3.list(BUCKET, PREFIX).await.expect("listed");

    let keys: Vec<(&str, u64)> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(
        keys,
        [
            (&*format!("{PREFIX}00-01-000-a.jsonl"), 120),
            (&*format!("{PREFIX}00-02-000-b.jsonl"), 80),
            (&*format!("{PREFIX}00-03-000-c.jsonl"), 40),
        ]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for request in seen.iter() {
        assert_eq!(request.bucket(), Some(BUCKET));
        assert_eq!(request.prefix(), Some(PREFIX));
        assert_eq!(request.delimiter(), None, "every object under the prefix");
    }
}

#[tokio::test]
async fn get_returns_the_body_and_refuses_what_is_over_the_limit() {
    let key = format!("{PREFIX}00-01-000-a.jsonl");
    let wanted = key.clone();
    let rule = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(move |req| {
            req.bucket() == Some(BUCKET) && req.key() == Some(wanted.as_str())
        })
        .then_output(|| {
            GetObjectOutput::builder()
                .content_length(11)
                .body(ByteStream::from_static(b"{\"a\":1}\n{}\n"))
                .build()
        });
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]));
    assert_eq!(s3.get(BUCKET, &key, 100).await.unwrap(), b"{\"a\":1}\n{}\n");
    let error = s3.get(BUCKET, &key, 10).await.unwrap_err();
    assert!(
        matches!(
            error,
            CaptureError::TooLarge {
                size: 11,
                limit: 10,
                ..
            }
        ),
        "{error:?}"
    );
}

fn denied(message: &'static str) -> impl Fn() -> GetObjectError + Send + Sync + 'static {
    move || {
        GetObjectError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message(message)
                .build(),
        )
    }
}

#[tokio::test]
async fn a_missing_kms_decrypt_is_told_apart_from_an_s3_denial() {
    let kms = mock!(aws_sdk_s3::Client::get_object).then_error(denied(
        "User: arn:aws:sts::123456789012:assumed-role/shadowpilot/fn is not authorized to perform: kms:Decrypt on the resource associated with this ciphertext",
    ));
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, [&kms]));
    let error = s3.get(BUCKET, "k", 1000).await.unwrap_err();
    assert!(
        matches!(&error, CaptureError::KmsAccessDenied { bucket, key, .. } if bucket == BUCKET && key == "k"),
        "{error:?}"
    );

    let plain = mock!(aws_sdk_s3::Client::get_object).then_error(denied("Access Denied"));
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, [&plain]));
    let error = s3.get(BUCKET, "k", 1000).await.unwrap_err();
    assert!(
        matches!(
            error,
            CaptureError::AccessDenied {
                operation: "GetObject",
                ..
            }
        ),
        "{error:?}"
    );

    let kms_code = mock!(aws_sdk_s3::Client::get_object).then_error(|| {
        GetObjectError::generic(
            ErrorMetadata::builder()
                .code("KMS.DisabledException")
                .message("the key is disabled")
                .build(),
        )
    });
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, [&kms_code]));
    assert!(matches!(
        s3.get(BUCKET, "k", 1000).await.unwrap_err(),
        CaptureError::KmsAccessDenied { .. }
    ));
}

#[tokio::test]
async fn a_denied_or_missing_bucket_is_typed_on_list() {
    let denied = mock!(aws_sdk_s3::Client::list_objects_v2).then_error(|| {
        ListObjectsV2Error::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("Access Denied")
                .build(),
        )
    });
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, [&denied]));
    let error = s3.list(BUCKET, PREFIX).await.unwrap_err();
    assert!(
        matches!(&error, CaptureError::AccessDenied { operation: "ListObjectsV2", key, .. } if key == PREFIX),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("s3://{BUCKET}/{PREFIX}")),
        "{error}"
    );

    let missing = mock!(aws_sdk_s3::Client::list_objects_v2).then_error(|| {
        ListObjectsV2Error::NoSuchBucket(aws_sdk_s3::types::error::NoSuchBucket::builder().build())
    });
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, [&missing]));
    assert!(matches!(
        s3.list(BUCKET, PREFIX).await.unwrap_err(),
        CaptureError::NoSuchBucket { .. }
    ));
}

#[tokio::test]
async fn a_listed_object_without_a_key_is_an_invalid_answer_naming_the_field() {
    let rule = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
        ListObjectsV2Output::builder()
            .contents(object("a.jsonl", 1))
            .contents(Object::builder().size(3).build())
            .build()
    });
    let s3 = S3Capture::new(mock_client!(aws_sdk_s3, [&rule]));
    let error = s3.list(BUCKET, PREFIX).await.unwrap_err();
    assert!(
        matches!(&error, CaptureError::InvalidResponse { field, .. } if field == "Contents[1].Key"),
        "{error:?}"
    );
}
