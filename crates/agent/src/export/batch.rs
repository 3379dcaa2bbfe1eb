//! The span queue of the trace exporter: spans converted for OTLP wait
//! here, in arrival order, until a batch is due; a batch leaves as one
//! export request.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;

use super::resource::ProcessResource;
use super::traces;
use super::transport::Request;
use crate::config::export::BatchSettings;
use crate::spans::Span;

pub struct SpanBatcher {
    pending: VecDeque<(Arc<ProcessResource>, OtlpSpan)>,
    /// When the oldest pending span was queued.
    oldest: Option<Instant>,
    settings: BatchSettings,
}

impl SpanBatcher {
    pub fn new(settings: BatchSettings) -> Self {
        SpanBatcher {
            pending: VecDeque::new(),
            oldest: None,
            settings: BatchSettings {
                max_queue_size: settings.max_queue_size.max(1),
                max_export_batch_size: settings.max_export_batch_size.max(1),
                schedule_delay: settings.schedule_delay,
            },
        }
    }

    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// Spans waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues a span of the process `resource` describes (the caller
    /// bounds the queue).
    pub fn push(&mut self, resource: Arc<ProcessResource>, span: &Span) {
        self.pending.push_back((resource, traces::convert(span)));
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// A full batch waits, or a partial one whose oldest span waited
    /// `schedule_delay` (any batch when `force`).
    pub fn is_due(&self, force: bool) -> bool {
        self.pending.len() >= self.settings.max_export_batch_size
            || (!self.pending.is_empty()
                && (force
                    || self
                        .oldest
                        .is_some_and(|t| t.elapsed() >= self.settings.schedule_delay)))
    }

    /// The next batch (at most `max_export_batch_size` spans) as one
    /// request; None when nothing waits.
    pub fn take(&mut self) -> Option<Request> {
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len().min(self.settings.max_export_batch_size);
        let batch: Vec<_> = self.pending.drain(..n).collect();
        self.oldest = (!self.pending.is_empty()).then(Instant::now);
        Some(Request::Traces(traces::request(batch)))
    }
}
