//! [`EventRecorder`] over the Kubernetes Events API (`events.k8s.io/v1`).
//!
//! [`KubeEvents::record`] only pushes into a bounded queue and returns: a full queue drops
//! the event (counted, logged with bounded volume) rather than slowing an admission. One
//! background task drains the queue through kube-runtime's
//! [`Recorder`].
//!
//! The `Recorder` aggregates repeats: an event with the same type, reason, action, reporter
//! and `regarding` object as one sent in the last 6 minutes patches that event's `series`
//! (count, last seen) instead of creating a new Event. The note is not part of that key, so
//! the aggregated Event keeps the note of the first occurrence.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{ClusterEvent, EventRecorder, EventType};

/// `reportingController` of every Event.
pub const REPORTER: &str = "provenance-gate";

/// Environment variable holding the pod name (downward API), used as `reportingInstance`.
pub const POD_NAME_ENV: &str = "POD_NAME";

/// Events waiting to be sent before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// Time allowed for one Event to be written before it is given up.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// API limits of `events.k8s.io/v1` (bytes).
const REASON_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;
const INSTANCE_LIMIT: usize = 128;

/// Events are queued here and sent by the task [`EventQueue::run`] drives.
#[derive(Debug, Clone)]
pub struct KubeEvents {
    sender: mpsc::Sender<ClusterEvent>,
    dropped: Arc<AtomicU64>,
}

/// The receiving end of [`KubeEvents`]: run it once, in its own task.
#[derive(Debug)]
pub struct EventQueue {
    receiver: mpsc::Receiver<ClusterEvent>,
}

impl KubeEvents {
    /// A queue of `capacity` events (at least 1) and its sender.
    pub fn channel(capacity: usize) -> (KubeEvents, EventQueue) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let events = KubeEvents {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (events, EventQueue { receiver })
    }

    /// Starts the sending task (in an `events` span under the current one) with the
    /// [`REPORTER`] identity and the pod name from [`POD_NAME_ENV`]. Needs a Tokio runtime.
    pub fn spawn(client: ::kube::Client) -> KubeEvents {
        let (events, queue) = KubeEvents::channel(DEFAULT_QUEUE_CAPACITY);
        let reporter = reporter(std::env::var(POD_NAME_ENV).ok());
        let recorder = Recorder::new(client, reporter);
        tokio::spawn(
            queue
                .run(recorder)
                .instrument(tracing::info_span!("events")),
        );
        events
    }

    /// Events dropped so far because the queue was full or its task had stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl EventRecorder for KubeEvents {
    fn record(&self, event: ClusterEvent) {
        if let Err(error) = self.sender.try_send(event) {
            let why = match &error {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "sender task stopped",
            };
            let event = error.into_inner();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // 1st, 2nd, 4th, 8th… drop: a flood of drops cannot flood the log too.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    why,
                    dropped,
                    reason = %event.reason,
                    kind = %event.regarding.kind,
                    name = %event.regarding.name,
                    "dropped a Kubernetes event"
                );
            }
        }
    }
}

impl EventQueue {
    /// Sends queued events with `recorder` until every [`KubeEvents`] is dropped.
    pub fn run(self, recorder: Recorder) -> impl Future<Output = ()> + Send + 'static {
        self.run_with(move |event, reference| {
            let recorder = recorder.clone();
            async move { recorder.publish(&event, &reference).await }
        })
    }

    /// The loop of [`run`](Self::run) over any `publish`: one event at a time, each given
    /// [`PUBLISH_TIMEOUT`]; failures are logged and the event is dropped.
    async fn run_with<P, F, E>(mut self, mut publish: P)
    where
        P: FnMut(Event, ObjectReference) -> F,
        F: Future<Output = Result<(), E>>,
        E: std::error::Error,
    {
        while let Some(event) = self.receiver.recv().await {
            let (kube_event, reference) = to_kube_event(&event);
            match tokio::time::timeout(PUBLISH_TIMEOUT, publish(kube_event, reference)).await {
                Ok(Ok(())) => {
                    tracing::debug!(reason = %event.reason, name = %event.regarding.name, "event sent");
                }
                Ok(Err(error)) => tracing::warn!(
                    error = %error,
                    reason = %event.reason,
                    kind = %event.regarding.kind,
                    namespace = ?event.regarding.namespace,
                    name = %event.regarding.name,
                    "failed to send a Kubernetes event"
                ),
                Err(_) => tracing::warn!(
                    timeout_seconds = PUBLISH_TIMEOUT.as_secs(),
                    reason = %event.reason,
                    name = %event.regarding.name,
                    "failed to send a Kubernetes event in time"
                ),
            }
        }
        tracing::debug!("event queue closed");
    }
}

/// The reporter identity: [`REPORTER`], and the pod name as instance when it is known.
pub fn reporter(pod_name: Option<String>) -> Reporter {
    Reporter {
        controller: REPORTER.to_owned(),
        instance: pod_name
            .filter(|name| !name.is_empty())
            .map(|name| truncate(&name, INSTANCE_LIMIT)),
    }
}

/// The kube-runtime event and the object it is about, within the API's length limits
/// (reason and action 128 bytes, note 1 kB). Empty strings become absent fields; a
/// `Namespace` (cluster-scoped) never carries a namespace.
pub fn to_kube_event(event: &ClusterEvent) -> (Event, ObjectReference) {
    let kube_event = Event {
        type_: match event.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: truncate(or_unspecified(&event.reason), REASON_LIMIT),
        note: (!event.note.is_empty()).then(|| truncate(&event.note, NOTE_LIMIT)),
        action: truncate(or_unspecified(&event.action), ACTION_LIMIT),
        secondary: None,
    };
    let regarding = &event.regarding;
    let cluster_scoped = regarding.kind == "Namespace" && regarding.api_version == "v1";
    let reference = ObjectReference {
        api_version: non_empty(&regarding.api_version),
        kind: non_empty(&regarding.kind),
        namespace: if cluster_scoped {
            None
        } else {
            regarding.namespace.as_deref().and_then(non_empty)
        },
        name: non_empty(&regarding.name),
        uid: regarding.uid.as_deref().and_then(non_empty),
        ..ObjectReference::default()
    };
    (kube_event, reference)
}

/// Reason and action are required by the API.
fn or_unspecified(value: &str) -> &str {
    if value.is_empty() {
        "Unspecified"
    } else {
        value
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// At most `limit` bytes of `text`, cut on a character boundary, ending in `…` when cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    const ELLIPSIS: &str = "…";
    let mut end = limit.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;

    fn event(reason: &str, name: &str) -> ClusterEvent {
        ClusterEvent {
            regarding: ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("payments".into()),
                name: name.into(),
                uid: Some("0b6b7c2e-1111-2222-3333-444455556666".into()),
            },
            type_: EventType::Warning,
            reason: reason.into(),
            note: "image ghcr.io/acme/api:1 denied: no attestation".into(),
            action: "Deny".into(),
        }
    }

    #[test]
    fn cluster_event_maps_to_kube_event_and_reference() {
        let (kube_event, reference) = to_kube_event(&event("ImageDenied", "api"));
        assert_eq!(kube_event.type_, KubeEventType::Warning);
        assert_eq!(kube_event.reason, "ImageDenied");
        assert_eq!(
            kube_event.note.as_deref(),
            Some("image ghcr.io/acme/api:1 denied: no attestation")
        );
        assert_eq!(kube_event.action, "Deny");
        assert!(kube_event.secondary.is_none());
        assert_eq!(
            reference,
            ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                namespace: Some("payments".into()),
                name: Some("api".into()),
                uid: Some("0b6b7c2e-1111-2222-3333-444455556666".into()),
                ..ObjectReference::default()
            }
        );
    }

    #[test]
    fn normal_type_and_empty_fields_map_to_absent_or_placeholder() {
        let mut cluster_event = event("", "");
        cluster_event.type_ = EventType::Normal;
        cluster_event.note.clear();
        cluster_event.action.clear();
        cluster_event.regarding.namespace = Some(String::new());
        cluster_event.regarding.uid = Some(String::new());
        let (kube_event, reference) = to_kube_event(&cluster_event);
        assert_eq!(kube_event.type_, KubeEventType::Normal);
        assert_eq!(kube_event.reason, "Unspecified");
        assert_eq!(kube_event.action, "Unspecified");
        assert_eq!(kube_event.note, None);
        // An unnamed object (a Pod with generateName) must not name the Event ".<nanos>".
        assert_eq!(reference.name, None);
        assert_eq!(reference.namespace, None);
        assert_eq!(reference.uid, None);
    }

    #[test]
    fn namespace_objects_are_cluster_scoped() {
        let cluster_event = ClusterEvent {
            regarding: ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: Some("payments".into()),
                name: "payments".into(),
                uid: None,
            },
            type_: EventType::Warning,
            reason: "BreakGlassAdmission".into(),
            note: "admitted under break-glass INC-4711".into(),
            action: "Admit".into(),
        };
        let (_, reference) = to_kube_event(&cluster_event);
        assert_eq!(reference.kind.as_deref(), Some("Namespace"));
        assert_eq!(reference.name.as_deref(), Some("payments"));
        assert_eq!(reference.namespace, None);
    }

    #[test]
    fn long_fields_are_cut_to_the_api_limits_on_char_boundaries() {
        let mut cluster_event = event(&"R".repeat(300), "api");
        cluster_event.note = "é".repeat(2000);
        cluster_event.action = "A".repeat(129);
        let (kube_event, _) = to_kube_event(&cluster_event);
        assert!(kube_event.reason.len() <= REASON_LIMIT);
        assert!(kube_event.reason.ends_with('…'));
        assert!(kube_event.action.len() <= ACTION_LIMIT);
        let note = kube_event.note.unwrap_or_default();
        assert!(
            note.len() <= NOTE_LIMIT && note.len() > NOTE_LIMIT - 8,
            "{}",
            note.len()
        );
        assert!(note.ends_with('…'));
        assert_eq!(truncate("short", 128), "short");
        assert_eq!(truncate(&"x".repeat(128), 128), "x".repeat(128));
    }

    #[test]
    fn reporter_uses_pod_name_when_known() {
        let named = reporter(Some("provenance-gate-7d9f-abcde".into()));
        assert_eq!(named.controller, "provenance-gate");
        assert_eq!(
            named.instance.as_deref(),
            Some("provenance-gate-7d9f-abcde")
        );
        assert_eq!(reporter(None).instance, None);
        assert_eq!(reporter(Some(String::new())).instance, None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("failed to publish")]
    struct PublishError;

    #[tokio::test]
    async fn queued_events_are_published_in_order_then_the_task_ends() {
        let (events, queue) = KubeEvents::channel(8);
        let published = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&published);
        let task = tokio::spawn(queue.run_with(move |event: Event, reference| {
            let sink = Arc::clone(&sink);
            async move {
                let name = reference.name.unwrap_or_default();
                sink.lock()
                    .map_err(|_| PublishError)?
                    .push((event.reason, name.clone()));
                if name == "fails" {
                    return Err(PublishError);
                }
                Ok(())
            }
        }));
        events.record(event("ImageDenied", "a"));
        events.record(event("ImageDenied", "fails"));
        events.record(event("BreakGlassAdmission", "b"));
        drop(events);
        task.await
            .expect("queue task ends once every sender is gone");
        let published = published.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(
            published,
            vec![
                ("ImageDenied".to_owned(), "a".to_owned()),
                ("ImageDenied".to_owned(), "fails".to_owned()),
                ("BreakGlassAdmission".to_owned(), "b".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_blocking_while_the_consumer_is_stalled() {
        const CAPACITY: usize = 4;
        let (events, queue) = KubeEvents::channel(CAPACITY);
        let started = Arc::new(tokio::sync::Notify::new());
        let signal = Arc::clone(&started);
        // The consumer takes one event and then never finishes publishing it.
        let consumer = tokio::spawn(queue.run_with(move |_event, _reference| {
            signal.notify_one();
            std::future::pending::<Result<(), PublishError>>()
        }));
        events.record(event("ImageDenied", "first"));
        started.notified().await;

        let recording = tokio::time::timeout(Duration::from_secs(5), async {
            for index in 0..100 {
                events.record(event("ImageDenied", &format!("burst-{index}")));
            }
        });
        recording
            .await
            .expect("record never waits for the consumer");
        // One in flight, CAPACITY queued, the rest dropped.
        assert_eq!(events.dropped(), 100 - CAPACITY as u64);
        consumer.abort();
    }

    #[tokio::test]
    async fn recording_after_the_task_stopped_drops_and_counts() {
        let (events, queue) = KubeEvents::channel(2);
        drop(queue);
        events.record(event("ImageDenied", "api"));
        events.record(event("ImageDenied", "api"));
        assert_eq!(events.dropped(), 2);
    }
}
