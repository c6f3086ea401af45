//! Serial ports for real boards: the port is opened non-blocking, set to raw 115200 8N1 when it
//! is a terminal, served as a link, and opened again after an error or when the other end goes
//! away (a USB adapter unplugged and plugged back).
//!
//! The gateway's only `unsafe` is here: the termios calls, and registering the port's
//! descriptor with tokio's reactor (`AsyncFd::register` is unsafe because the reactor cannot
//! check that the descriptor stays open).
#![allow(unsafe_code)]

use crate::{Shared, log};
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// Wait before opening a port again, doubling up to `MAX_RETRY` while it keeps failing.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Serves the port at `path` until `shutdown`, reopening it after every error.
pub(crate) async fn run(path: PathBuf, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let name = path.display().to_string();
    let mut retry = FIRST_RETRY;
    loop {
        match open(&path) {
            Ok(port) => {
                let opened = std::time::Instant::now();
                tokio::select! {
                    _ = crate::link::serve(port, &name, &shared) => {}
                    _ = shutdown.changed() => return,
                }
                // A port that fails at once (nothing at the other end yet) is retried ever
                // more slowly, one that served a while at once.
                retry = if opened.elapsed() > MAX_RETRY {
                    FIRST_RETRY
                } else {
                    (retry * 2).min(MAX_RETRY)
                };
            }
            Err(e) => {
                log::warn(
                    "serial_open_failed",
                    &[("path", name.clone()), ("error", e.to_string())],
                );
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn open(path: &Path) -> io::Result<Port> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        // Not our controlling terminal; readiness comes from the reactor, not blocking reads.
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    if file.is_terminal() {
        set_raw(&file)?;
    }
    // Fails for files the reactor cannot watch (a regular file): the path is not a port.
    // SAFETY: `file` is open and moves into the `AsyncFd`, which owns it until it is dropped;
    // nothing else closes it, and `File::as_raw_fd` always returns the same descriptor.
    let fd = unsafe { AsyncFd::register(file) }.map_err(io::Error::from)?;
    Ok(Port(fd))
}

/// Raw mode at 115200 baud, 8 data bits, no parity, one stop bit, no flow control: bytes pass
/// unchanged (no echo, no line editing, no CR/LF translation, no signals).
fn set_raw(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `termios` is plain data (all-zero is a valid value to be overwritten); `fd` is an
    // open descriptor owned by `file`, which outlives these calls; each call gets a pointer to
    // our own local `termios` and reads or writes only that struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::CSTOPB | libc::CRTSCTS);
        t.c_cflag |= libc::CS8 | libc::CREAD | libc::CLOCAL;
        t.c_iflag &= !(libc::IXON | libc::IXOFF | libc::IXANY);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        if libc::cfsetispeed(&mut t, libc::B115200) != 0
            || libc::cfsetospeed(&mut t, libc::B115200) != 0
            || libc::tcsetattr(fd, libc::TCSANOW, &t) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A non-blocking port driven by tokio's reactor.
struct Port(AsyncFd<File>);

impl AsyncRead for Port {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Port {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written straight to the driver; nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
