//! Kubernetes Events (core/v1) on the scaled Deployment, so that `kubectl describe deployment`
//! and `kubectl get events` show what tidegate did and why: reason `Scaled` on each scale,
//! `ScaleFailed` when the API server refused a write, `RolloutUnsafe` when a rollout of the
//! Deployment would take pods out of service before their replacements are Ready.
//!
//! Events are best effort: a failure to record one is logged and counted, never retried, and
//! never holds up scaling.

use std::time::Duration;

use ::kube::Api;
use ::kube::api::{ObjectMeta, PostParams};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tracing::{debug, warn};

use crate::kube::Error;

/// The `source.component` of tidegate's Events.
pub const COMPONENT: &str = "tidegate";

/// Event reason for a scale that was written.
pub const REASON_SCALED: &str = "Scaled";
/// Event reason for a scale the API server refused.
pub const REASON_SCALE_FAILED: &str = "ScaleFailed";
/// Event reason for a rollout strategy that takes capacity away ([`super::strategy`]).
pub const REASON_ROLLOUT_UNSAFE: &str = "RolloutUnsafe";

/// The Deployment the Events are about.
#[derive(Clone, Debug)]
pub struct Subject {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (Events link to the object by it), when known.
    pub uid: Option<String>,
}

/// Builds one Event about `subject`. `warning` picks the type (`Warning` vs `Normal`).
pub fn event(subject: &Subject, reason: &str, message: String, warning: bool) -> Event {
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", subject.name)),
            namespace: Some(subject.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: Some(subject.name.clone()),
            namespace: Some(subject.namespace.clone()),
            uid: subject.uid.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

/// Records an Event; failures are logged and returned for counting, not retried.
pub async fn record(api: &Api<Event>, event: &Event, timeout: Duration) -> Result<(), Error> {
    let pp = PostParams::default();
    match crate::kube::within(timeout, "create event", api.create(&pp, event)).await {
        Ok(e) => {
            debug!(name = ?e.metadata.name, reason = ?event.reason, "recorded event");
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, "cannot record an event");
            Err(e)
        }
    }
}

/// The message of a `Scaled` Event.
pub fn scaled_message(from: i32, to: i32, why: &str) -> String {
    let verb = if to > from { "up" } else { "down" };
    format!("Scaled {verb} from {from} to {to} replicas: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fixtures;

    #[tokio::test]
    async fn a_scaled_event_names_the_deployment_and_the_reason() {
        let (client, mut server) = fixtures::client();
        let api: Api<Event> = Api::namespaced(client, "demo");
        let subject = Subject {
            namespace: "demo".into(),
            name: "echo".into(),
            uid: Some("u-1".into()),
        };
        let e = event(
            &subject,
            REASON_SCALED,
            scaled_message(2, 5, "forecast"),
            false,
        );
        let script = tokio::spawn(async move {
            server
                .answer(
                    201,
                    serde_json::json!({"metadata": {"name": "echo.1"},
                    "involvedObject": {}}),
                )
                .await
        });
        record(&api, &e, crate::kube::DEFAULT_CALL_TIMEOUT)
            .await
            .unwrap();
        let seen = script.await.unwrap();
        assert_eq!(seen.method, http::Method::POST);
        assert_eq!(seen.path, "/api/v1/namespaces/demo/events");
        assert_eq!(seen.body["reason"], "Scaled");
        assert_eq!(seen.body["type"], "Normal");
        assert_eq!(seen.body["involvedObject"]["kind"], "Deployment");
        assert_eq!(seen.body["involvedObject"]["uid"], "u-1");
        assert_eq!(
            seen.body["message"],
            "Scaled up from 2 to 5 replicas: forecast"
        );
    }
}
