//! Tee bodies: wrappers that pass every frame on the moment it arrives (nothing is buffered
//! on the way to the client or to production) and keep a copy of at most `--max-body` bytes
//! for the recording. Copies are `Bytes` handles onto the frames themselves, so keeping them
//! costs a reference count, not a memcpy.
//!
//! [`RequestTee`] also enforces `--max-request-body` and notes how the request body ended
//! (complete, client error, too large) in a [`RequestState`] shared with the proxy.
//! [`ResponseTee`] calls its [`Finish`] exactly once — at the end of the stream, on an
//! upstream error, or when dropped (the client went away, or hyper stopped polling because
//! the body was known to be complete) — which is when the exchange is handed on.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

/// The first `limit` bytes of a body.
#[derive(Clone, Debug, Default)]
pub struct BodyCopy {
    /// The first piece kept, apart: most bodies come in one, and need no list.
    first: Bytes,
    /// Any further pieces.
    rest: Vec<Bytes>,
    len: usize,
    limit: usize,
    truncated: bool,
}

impl BodyCopy {
    /// An empty copy that keeps at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BodyCopy {
            limit,
            ..Default::default()
        }
    }

    /// Keeps (a prefix of) `data`.
    pub fn push(&mut self, data: &Bytes) {
        let take = data.len().min(self.limit - self.len);
        // An empty slice is a new empty handle, not a second one onto `data`.
        self.keep(data.slice(..take));
        if data.len() > take {
            self.truncated = true;
        }
    }

    /// Keeps (a prefix of) `data`, which is the copy's own: no second handle on it is
    /// made, which for bytes just copied out would cost an allocation.
    pub fn keep(&mut self, mut data: Bytes) {
        let room = self.limit - self.len;
        if data.len() > room {
            self.truncated = true;
            data.truncate(room);
        }
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if self.first.is_empty() {
            self.first = data;
        } else {
            self.rest.push(data);
        }
    }

    /// The bytes kept and whether the body was longer.
    pub fn into_parts(self) -> (Bytes, bool) {
        if self.rest.is_empty() {
            return (self.first, self.truncated);
        }
        let mut b = BytesMut::with_capacity(self.len);
        for c in std::iter::once(&self.first).chain(&self.rest) {
            b.extend_from_slice(c);
        }
        (b.freeze(), self.truncated)
    }
}

/// Why a body wrapper failed a frame.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    /// The request body passed `--max-request-body`.
    #[error("request body larger than {0} bytes (--max-request-body)")]
    TooLarge(u64),
    /// The other side broke the stream.
    #[error(transparent)]
    Stream(#[from] hyper::Error),
}

/// How a request body ended, as far as the proxy needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestEnd {
    /// Still streaming (or never polled to the end).
    Open = 0,
    /// Read to the end.
    Complete = 1,
    /// The client broke it off.
    ClientError = 2,
    /// It passed `--max-request-body`.
    TooLarge = 3,
}

/// What the proxy learns from the request tee: how the body ended and its copy.
#[derive(Debug, Default)]
pub struct RequestState {
    end: AtomicU8,
    copy: Mutex<Option<BodyCopy>>,
}

impl RequestState {
    /// How the request body ended so far.
    pub fn end(&self) -> RequestEnd {
        match self.end.load(Ordering::Acquire) {
            1 => RequestEnd::Complete,
            2 => RequestEnd::ClientError,
            3 => RequestEnd::TooLarge,
            _ => RequestEnd::Open,
        }
    }

    /// A body read before it was forwarded, ended as `end` (complete, or cut off while it
    /// was read), with its copy.
    pub fn settled(end: RequestEnd, copy: Option<BodyCopy>) -> Self {
        RequestState {
            end: AtomicU8::new(end as u8),
            copy: Mutex::new(copy),
        }
    }

    /// Takes the body copy, once the tee has deposited it.
    pub fn take_copy(&self) -> Option<BodyCopy> {
        self.copy.lock().ok().and_then(|mut c| c.take())
    }

    fn settle(&self, end: RequestEnd, copy: Option<BodyCopy>) {
        // The first ending wins: a drop after a completed stream changes nothing.
        let _ = self.end.compare_exchange(
            RequestEnd::Open as u8,
            end as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if let (Some(c), Ok(mut slot)) = (copy, self.copy.lock()) {
            *slot = Some(c);
        }
    }
}

/// The client's request body on its way to production.
#[derive(Debug)]
pub struct RequestTee {
    inner: Incoming,
    copy: Option<BodyCopy>,
    seen: u64,
    limit: Option<u64>,
    state: std::sync::Arc<RequestState>,
    settled: bool,
}

impl RequestTee {
    /// Wraps `inner`; keeps a copy when `copy` is given; fails past `limit` bytes.
    pub fn new(
        inner: Incoming,
        copy: Option<BodyCopy>,
        limit: Option<u64>,
        state: std::sync::Arc<RequestState>,
    ) -> Self {
        RequestTee {
            inner,
            copy,
            seen: 0,
            limit,
            state,
            settled: false,
        }
    }

    fn settle(&mut self, end: RequestEnd) {
        if !self.settled {
            self.settled = true;
            self.state.settle(end, self.copy.take());
        }
    }
}

impl Body for RequestTee {
    type Data = Bytes;
    type Error = TeeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TeeError>>> {
        let this = self.get_mut();
        if this.settled && this.state.end() == RequestEnd::TooLarge {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if let Some(limit) = this.limit.filter(|l| this.seen > *l) {
                        this.settle(RequestEnd::TooLarge);
                        return Poll::Ready(Some(Err(TeeError::TooLarge(limit))));
                    }
                    if let Some(c) = &mut this.copy {
                        c.push(data);
                    }
                }
                // Trailers are a body's last frame, and hyper's HTTP/1 client drops a body as
                // soon as it has written them, before an HTTP/1 `Incoming` says it has ended.
                // Nor does the client stack poll again once it knows the body is complete.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.settle(RequestEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.settle(RequestEnd::ClientError);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.settle(RequestEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestTee {
    fn drop(&mut self) {
        let end = if self.inner.is_end_stream() {
            RequestEnd::Complete
        } else {
            RequestEnd::Open
        };
        self.settle(end);
    }
}

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseEnd {
    /// Every frame was passed on.
    Complete,
    /// Production broke the stream after the head was passed on.
    UpstreamError,
    /// The body was dropped before its end: the client went away.
    ClientGone,
}

/// What happens once a response body has ended.
pub trait Finish {
    /// Called exactly once with how the body ended, its copy and its trailers.
    fn finish(self, end: ResponseEnd, copy: Option<BodyCopy>, trailers: Option<HeaderMap>);
}

/// Production's response body on its way to the client.
#[derive(Debug)]
pub struct ResponseTee<F: Finish> {
    inner: Incoming,
    copy: Option<BodyCopy>,
    trailers: Option<HeaderMap>,
    keep_trailers: bool,
    finish: Option<F>,
}

impl<F: Finish> ResponseTee<F> {
    /// Wraps `inner`; keeps a body copy when `copy` is given and trailers when asked.
    pub fn new(inner: Incoming, copy: Option<BodyCopy>, keep_trailers: bool, finish: F) -> Self {
        ResponseTee {
            inner,
            copy,
            trailers: None,
            keep_trailers,
            finish: Some(finish),
        }
    }

    fn end(&mut self, end: ResponseEnd) {
        if let Some(f) = self.finish.take() {
            f.finish(end, self.copy.take(), self.trailers.take());
        }
    }
}

impl<F: Finish + Unpin> Body for ResponseTee<F> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Some(c) = &mut this.copy {
                        c.push(data);
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    if this.keep_trailers {
                        this.trailers = Some(t.clone());
                    }
                }
                // Trailers are a body's last frame, and hyper's HTTP/1 server drops a body as
                // soon as it has written them, before an HTTP/1 `Incoming` says it has ended.
                // Nor does hyper poll again once it knows the body is complete.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.end(ResponseEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(ResponseEnd::UpstreamError);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.end(ResponseEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: Finish> Drop for ResponseTee<F> {
    fn drop(&mut self) {
        let end = if self.inner.is_end_stream() {
            ResponseEnd::Complete
        } else {
            ResponseEnd::ClientGone
        };
        self.end(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_a_prefix_without_copying_small_bodies() {
        let mut c = BodyCopy::new(5);
        let a = Bytes::from_static(b"abc");
        c.push(&a);
        let (b, t) = c.clone().into_parts();
        assert_eq!((&b[..], t), (&b"abc"[..], false));
        // One chunk is handed back as it is: the same memory.
        assert_eq!(b.as_ptr(), a.as_ptr());
        c.push(&Bytes::from_static(b"defg"));
        c.push(&Bytes::from_static(b"h"));
        let (b, t) = c.into_parts();
        assert_eq!((&b[..], t), (&b"abcde"[..], true));
        let (b, t) = BodyCopy::new(0).into_parts();
        assert!(b.is_empty() && !t);

        // Owned bytes are kept as they are, cut at the limit, and empty ones not at all.
        let mut c = BodyCopy::new(6);
        let a = Bytes::from(b"abcd".to_vec());
        let at = a.as_ptr();
        c.keep(Bytes::new());
        c.keep(a);
        assert_eq!(c.clone().into_parts().0.as_ptr(), at);
        c.keep(Bytes::from(b"efgh".to_vec()));
        c.keep(Bytes::new());
        assert!(c.rest.len() == 1 && c.len == 6);
        let (b, t) = c.into_parts();
        assert_eq!((&b[..], t), (&b"abcdef"[..], true));
    }

    #[test]
    fn request_state_keeps_the_first_ending() {
        let s = RequestState::default();
        assert_eq!(s.end(), RequestEnd::Open);
        s.settle(RequestEnd::Complete, Some(BodyCopy::new(1)));
        s.settle(RequestEnd::ClientError, None);
        assert_eq!(s.end(), RequestEnd::Complete);
        assert!(s.take_copy().is_some());
        assert!(s.take_copy().is_none());
    }
}
