//! GitHub webhooks (`X-Hub-Signature-256`, verified in [`super::auth`]).

use serde_json::Value;

use super::{required_header, status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::event::{CanonicalStatus, EventKind, NormalizedEvent};

/// GitHub webhooks: the event name and delivery id come in headers.
pub struct GitHub;

impl Provider for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let id = required_header(request, "x-github-delivery")?.to_string();
        let event = required_header(request, "x-github-event")?.to_string();
        let action = f.text("action")?;
        let conclusion = f.first_text(&[
            &format!("{event}.conclusion"),
            &format!("{event}.state"),
            "conclusion",
            "state",
        ])?;
        let status = match conclusion.as_deref().map(status_key).as_deref() {
            Some("SUCCESS") => CanonicalStatus::Succeeded,
            Some("FAILURE" | "TIMED_OUT" | "ERROR" | "STARTUP_FAILURE") => CanonicalStatus::Failed,
            Some("CANCELLED") => CanonicalStatus::Cancelled,
            Some("PENDING" | "QUEUED" | "IN_PROGRESS") => CanonicalStatus::Processing,
            _ => CanonicalStatus::Unknown,
        };
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind: EventKind::Other,
            order_id: None,
            merchant_ref: None,
            status,
            raw_status: Some(match &action {
                Some(a) => format!("{event}.{a}"),
                None => event,
            }),
            raw_sub_status: conclusion,
            reason: None,
            amount: None,
            occurred_at_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::normalize;

    #[test]
    fn github_delivery() {
        let body = r##"{"action": "completed", "workflow_run": {"conclusion": "failure"}}"##;
        let e = normalize(
            &GitHub,
            &[
                ("x-github-delivery", "d-1"),
                ("x-github-event", "workflow_run"),
            ],
            body,
        )
        .unwrap();
        assert_eq!(
            (e.id.as_str(), e.raw_status.as_deref(), e.status),
            (
                "d-1",
                Some("workflow_run.completed"),
                CanonicalStatus::Failed
            )
        );
        assert_eq!(
            normalize(&GitHub, &[("x-github-event", "push")], "{}"),
            Err(NormalizeError::MissingHeader("x-github-delivery"))
        );
    }
}
