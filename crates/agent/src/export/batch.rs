//! The span queue of the trace exporter: spans wait here, already encoded
//! as protobuf, in arrival order, until a batch is due; a batch leaves as
//! one encoded export request.
//!
//! Spans are encoded on arrival into the batch they will leave in (a
//! chunk of at most `max_export_batch_size` spans), so a due batch only
//! has to be framed: one `ResourceSpans` per process in order of first
//! appearance, its spans in arrival order. Chunk buffers are reused.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::resource::ProcessResource;
use super::traces;
use super::transport::Request;
use crate::config::export::BatchSettings;
use crate::spans::Span;

/// Emptied chunks kept for reuse: the queue refills at once under load.
const SPARE_CHUNKS: usize = 4;

/// The spans of one future request.
#[derive(Default)]
struct Chunk {
    /// `put_span` output of every span, in arrival order.
    bytes: Vec<u8>,
    /// Per span: its group (index in `groups`) and where its bytes end.
    spans: Vec<(u32, usize)>,
    /// Processes in order of first appearance, with their spans' bytes.
    groups: Vec<(Arc<ProcessResource>, usize)>,
}

impl Chunk {
    fn push(&mut self, resource: &Arc<ProcessResource>, span: &Span) {
        let start = self.bytes.len();
        traces::put_span(&mut self.bytes, span);
        let len = self.bytes.len() - start;
        // Few processes per batch: a linear scan beats hashing here.
        let g = match self
            .groups
            .iter()
            .position(|(r, _)| Arc::ptr_eq(r, resource))
        {
            Some(g) => g,
            None => {
                self.groups.push((resource.clone(), 0));
                self.groups.len() - 1
            }
        };
        if let Some((_, n)) = self.groups.get_mut(g) {
            *n += len;
        }
        self.spans
            .push((u32::try_from(g).unwrap_or(u32::MAX), self.bytes.len()));
    }

    /// The `ExportTraceServiceRequest` holding these spans.
    fn request(&self) -> Vec<u8> {
        let size = self
            .groups
            .iter()
            .map(|(r, n)| traces::resource_spans_field_len(&r.encoded, *n))
            .sum();
        let mut out = Vec::with_capacity(size);
        for (g, (r, n)) in self.groups.iter().enumerate() {
            traces::put_resource_spans(&mut out, &r.encoded, *n, |out| {
                let mut start = 0;
                for &(sg, end) in &self.spans {
                    if sg as usize == g {
                        out.extend_from_slice(self.bytes.get(start..end).unwrap_or_default());
                    }
                    start = end;
                }
            });
        }
        out
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.groups.clear();
    }
}

pub struct SpanBatcher {
    /// Chunks in arrival order; all but the last are full.
    chunks: VecDeque<Chunk>,
    spare: Vec<Chunk>,
    len: usize,
    /// When the oldest pending span was queued.
    oldest: Option<Instant>,
    settings: BatchSettings,
}

impl SpanBatcher {
    pub fn new(settings: BatchSettings) -> Self {
        SpanBatcher {
            chunks: VecDeque::new(),
            spare: Vec::new(),
            len: 0,
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
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a span of the process `resource` describes (the caller
    /// bounds the queue).
    pub fn push(&mut self, resource: &Arc<ProcessResource>, span: &Span) {
        let full = self
            .chunks
            .back()
            .is_none_or(|c| c.spans.len() >= self.settings.max_export_batch_size);
        if full {
            let chunk = self.spare.pop().unwrap_or_default();
            self.chunks.push_back(chunk);
        }
        if let Some(c) = self.chunks.back_mut() {
            c.push(resource, span);
            self.len += 1;
        }
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// A full batch waits, or a partial one whose oldest span waited
    /// `schedule_delay` (any batch when `force`).
    pub fn is_due(&self, force: bool) -> bool {
        self.len >= self.settings.max_export_batch_size
            || (self.len > 0
                && (force
                    || self
                        .oldest
                        .is_some_and(|t| t.elapsed() >= self.settings.schedule_delay)))
    }

    /// When [`is_due`](Self::is_due) turns true without more spans; None
    /// when nothing waits.
    pub fn due_at(&self) -> Option<Instant> {
        if self.len >= self.settings.max_export_batch_size {
            return Some(Instant::now());
        }
        self.oldest
            .filter(|_| self.len > 0)
            .map(|t| t + self.settings.schedule_delay)
    }

    /// The next batch (at most `max_export_batch_size` spans, the oldest)
    /// as one request; None when nothing waits.
    pub fn take(&mut self) -> Option<Request> {
        let mut chunk = self.chunks.pop_front()?;
        let n = chunk.spans.len();
        let body = Bytes::from(chunk.request());
        self.len = self.len.saturating_sub(n);
        self.oldest = (self.len > 0).then(Instant::now);
        if self.spare.len() < SPARE_CHUNKS {
            chunk.clear();
            self.spare.push(chunk);
        }
        Some(Request::traces(body, n as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::span;
    use crate::spans::SpanKind;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::time::Duration;

    fn res(pid: u32) -> Arc<ProcessResource> {
        Arc::new(ProcessResource::new(
            Arc::new(proc_info(pid, "srv")),
            Default::default(),
        ))
    }

    /// Batches of the configured size, oldest first, grouped per process
    /// in order of first appearance; nothing lost or reordered.
    #[test]
    fn batches_in_order_grouped_per_process() {
        let (a, b) = (res(1), res(2));
        let mut q = SpanBatcher::new(BatchSettings {
            max_queue_size: 100,
            max_export_batch_size: 4,
            schedule_delay: Duration::from_secs(3600),
        });
        for i in 0..10u8 {
            let r = if i % 3 == 1 { &b } else { &a };
            let mut s = span(r.proc.clone(), 200, SpanKind::Server);
            s.span_id = [i; 8];
            q.push(r, &s);
        }
        assert_eq!(q.len(), 10);
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        while q.is_due(false) {
            let req = q.take().unwrap();
            let d = ExportTraceServiceRequest::decode(req.body().clone()).unwrap();
            sizes.push(req.items());
            for rs in &d.resource_spans {
                let spans = &rs.scope_spans[0].spans;
                ids.push(spans.iter().map(|s| s.span_id[0]).collect::<Vec<_>>());
            }
        }
        // Two full batches; the rest waits for its delay.
        assert_eq!(sizes, vec![4, 4]);
        assert_eq!(q.len(), 2);
        assert_eq!(ids, vec![vec![0, 2, 3], vec![1], vec![4, 7], vec![5, 6]]);
        assert!(q.is_due(true));
        let last = q.take().unwrap();
        assert_eq!(last.items(), 2);
        assert!(q.is_empty() && q.take().is_none() && !q.is_due(true));
    }

    /// The outputs thread sleeps until `due_at`: nothing when empty, the
    /// oldest span's delay for a partial batch, now for a full one.
    #[test]
    fn due_at_follows_the_oldest_span_and_full_batches() {
        let a = res(1);
        let delay = Duration::from_secs(5);
        let mut q = SpanBatcher::new(BatchSettings {
            max_queue_size: 100,
            max_export_batch_size: 2,
            schedule_delay: delay,
        });
        assert_eq!(q.due_at(), None);
        let before = Instant::now();
        q.push(&a, &span(a.proc.clone(), 200, SpanKind::Server));
        let due = q.due_at().unwrap();
        assert!(due >= before + delay && due <= Instant::now() + delay);
        q.push(&a, &span(a.proc.clone(), 200, SpanKind::Server));
        assert!(q.due_at().unwrap() <= Instant::now());
        q.take().unwrap();
        assert_eq!(q.due_at(), None);
    }
}
