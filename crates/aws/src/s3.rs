//! `CaptureSource` over S3: ListObjectsV2 by prefix (every page) and
//! GetObject, with S3's and KMS's refusals told apart. With an endpoint
//! override the client uses path-style addressing, so any S3-compatible
//! server stands in for S3 (a local one has no per-bucket host names).

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use shadowpilot_core::ports::{BoxError, CaptureError, CaptureObject, CaptureSource};

const LIST: &str = "ListObjectsV2";
const GET: &str = "GetObject";

/// Captured requests and responses in S3.
#[derive(Debug, Clone)]
pub struct S3Capture {
    client: aws_sdk_s3::Client,
}

impl S3Capture {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// A client over `config`; path-style when an endpoint is overridden
    /// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`).
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        let overridden = config.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(overridden)
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(s3))
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

/// What a refusal of S3 says about whom it refused: S3 answers a missing
/// kms:Decrypt with its own AccessDenied whose message names the KMS
/// action, and KMS problems of the key with `KMS.*` codes.
fn classify<E>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: SdkError<E, HttpResponse>,
) -> CaptureError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_string);
    let message = err
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_string();
    let source: BoxError = Box::new(err);
    let kms = code.as_deref().is_some_and(|c| c.starts_with("KMS.")) || message.contains("kms:");
    match code.as_deref() {
        _ if kms && operation == GET => CaptureError::KmsAccessDenied {
            bucket: bucket.into(),
            key: key.into(),
            source,
        },
        Some("NoSuchBucket") => CaptureError::NoSuchBucket {
            bucket: bucket.into(),
        },
        Some("AccessDenied" | "AccessDeniedException" | "AllAccessDisabled") => {
            CaptureError::AccessDenied {
                operation,
                bucket: bucket.into(),
                key: key.into(),
                source,
            }
        }
        // HEAD-like answers carry no code: a bare 403 is a denial too.
        None if status == Some(403) => CaptureError::AccessDenied {
            operation,
            bucket: bucket.into(),
            key: key.into(),
            source,
        },
        _ => CaptureError::Service { operation, source },
    }
}

#[async_trait]
impl CaptureSource for S3Capture {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<CaptureObject>, CaptureError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| {
                if matches!(
                    err.as_service_error(),
                    Some(
                        aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error::NoSuchBucket(_)
                    )
                ) {
                    CaptureError::NoSuchBucket {
                        bucket: bucket.into(),
                    }
                } else {
                    classify(LIST, bucket, prefix, err)
                }
            })?;
            for (index, object) in page.contents().iter().enumerate() {
                let key = object.key().ok_or_else(|| CaptureError::InvalidResponse {
                    operation: LIST,
                    field: format!("Contents[{index}].Key"),
                    problem: format!("missing under prefix {prefix}"),
                })?;
                objects.push(CaptureObject {
                    key: key.to_string(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            }
        }
        Ok(objects)
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, CaptureError> {
        let answer = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| classify(GET, bucket, key, err))?;
        let size = answer
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let too_large = |size| CaptureError::TooLarge {
            bucket: bucket.into(),
            key: key.into(),
            size,
            limit: max_bytes,
        };
        if size > max_bytes {
            return Err(too_large(size));
        }
        let bytes = answer
            .body
            .collect()
            .await
            .map_err(|err| CaptureError::Service {
                operation: GET,
                source: Box::new(err),
            })?
            .into_bytes();
        // Content-Length may be absent or wrong; the body decides.
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes.to_vec())
    }
}
