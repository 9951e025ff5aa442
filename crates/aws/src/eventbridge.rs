//! `EventSink` over EventBridge PutEvents.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use shadowpilot_core::events::{ShadowEvent, SOURCE};
use shadowpilot_core::ports::{EventError, EventSink};

/// PutEvents takes at most this many entries a call.
const MAX_ENTRIES: usize = 10;

/// Events on one bus (`None`: the account's default bus).
#[derive(Debug, Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: Option<String>,
}

impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: Option<String>) -> Self {
        Self {
            client,
            bus: bus.filter(|name| !name.is_empty() && name != "default"),
        }
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, events: &[ShadowEvent]) -> Result<(), EventError> {
        for chunk in events.chunks(MAX_ENTRIES) {
            let mut entries = Vec::with_capacity(chunk.len());
            for event in chunk {
                let detail =
                    serde_json::to_string(&event.detail).map_err(|error| EventError::Service {
                        source: Box::new(error),
                    })?;
                entries.push(
                    PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(event.detail_type)
                        .resources(&event.resource)
                        .detail(detail)
                        .set_event_bus_name(self.bus.clone())
                        .build(),
                );
            }
            let sent = entries.len();
            let answer = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| EventError::Service {
                    source: Box::new(error),
                })?;
            let failed = usize::try_from(answer.failed_entry_count()).unwrap_or(0);
            if failed > 0 {
                let message = answer
                    .entries()
                    .iter()
                    .filter_map(|entry| {
                        entry.error_code().map(|code| {
                            format!("{code}: {}", entry.error_message().unwrap_or_default())
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(EventError::Refused {
                    failed,
                    sent,
                    message,
                });
            }
        }
        Ok(())
    }
}
