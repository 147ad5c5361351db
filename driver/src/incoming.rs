//! The connections the driver's gRPC port accepts, each on a deadline: a peer must send its
//! first byte (a TLS ClientHello, or the HTTP/2 preface) within [`FIRST_BYTE`] of connecting, or
//! its connection is closed. A connection that says nothing would otherwise stay open for ever,
//! and a few thousand of them would use up the driver's file descriptors. (After the first byte,
//! the TLS handshake has its own deadline, the hello another, and HTTP/2 keepalives notice a
//! peer that vanished.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long an accepted connection may stay silent before its first byte.
pub const FIRST_BYTE: Duration = Duration::from_secs(10);

/// The accepted connections of `listener`, each closed if silent past [`FIRST_BYTE`].
pub fn guarded(listener: TcpListener) -> impl Stream<Item = io::Result<Guarded>> {
    TcpListenerStream::new(listener).map(|accepted| accepted.map(Guarded::new))
}

/// A TCP connection that fails its reads once silent past its first-byte deadline.
pub struct Guarded {
    inner: TcpStream,
    /// Until the first byte arrives; `None` after.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(inner: TcpStream) -> Self {
        Guarded { inner, deadline: Some(Box::pin(tokio::time::sleep(FIRST_BYTE))) }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
        {
            self.deadline = None;
            return read;
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let silent = format!("no byte within {FIRST_BYTE:?} of connecting");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, silent)));
        }
        read
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
