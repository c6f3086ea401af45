//! FDL1 streams of a release's payload (`delta`, `docs/delta-format.md`): made at upload (the
//! payload compressed, and deltas from the earlier releases a device may be running), stored
//! content-addressed in DATA/streams with a row each in `streams`, and `offer`, the one place
//! that decides which stream a device is offered with its update.
//!
//! A stream's target is always the release's whole payload (its payloads concatenated, as the
//! plain download); a delta's base is an earlier artifact's whole payload: for firmware the
//! image a device on that version runs, for a model the active model and validation set a
//! device on that version holds. Streams are not trusted by devices (they check the rebuilt
//! payload against the signed manifest), so nothing here is signed.

use crate::db::AnyConnection;
use crate::schema::{artifacts, streams};
use crate::store::{self, Artifact};
use artifact::ComponentKind;
use diesel::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Deltas are made from at most this many earlier releases (the newest first).
pub const MAX_BASES: usize = 4;

/// A stored stream of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = streams)]
pub struct Stream {
    pub id: i64,
    pub artifact_id: i64,
    /// The artifact whose payload it is a delta from (None: compressed).
    pub base_artifact_id: Option<i64>,
    /// That payload's SHA-256, hex.
    pub base_sha256: Option<String>,
    /// Bytes of the stream.
    pub len: i64,
    /// The stream file's SHA-256 (its name in DATA/streams).
    pub sha256: String,
}

impl Stream {
    /// The offer an update carries for this stream.
    pub fn offer(&self) -> protocol::StreamOffer {
        protocol::StreamOffer {
            id: self.id as u64,
            len: self.len as u32,
            base_sha256: self
                .base_sha256
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok()),
        }
    }
}

/// Where a stream with this file digest lives.
pub fn path(data: &Path, sha256: &str) -> PathBuf {
    data.join("streams").join(sha256)
}

/// A stream made for an artifact, not stored yet.
#[derive(Debug, Clone)]
pub struct Made {
    /// The base artifact's id and payload SHA-256 (None: compressed).
    pub base: Option<(i64, String)>,
    pub bytes: Vec<u8>,
}

/// Whether two artifacts' comma-separated board lists share a board.
fn share_board(a: &str, b: &str) -> bool {
    a.split(',')
        .any(|x| !x.is_empty() && b.split(',').any(|y| y == x))
}

/// The earlier artifacts a device could be running when it is offered `a`, newest first, one per
/// distinct payload, at most `MAX_BASES`: for firmware those sharing a board with it, for a
/// model those of the same model name.
pub fn bases(conn: &mut AnyConnection, a: &Artifact) -> QueryResult<Vec<Artifact>> {
    let earlier: Vec<Artifact> = artifacts::table
        .filter(artifacts::kind.eq(&a.kind))
        .filter(artifacts::id.lt(a.id))
        .order(artifacts::id.desc())
        .select(Artifact::as_select())
        .load(conn)?;
    let mut out: Vec<Artifact> = Vec::new();
    for e in earlier {
        let related = match a.component() {
            ComponentKind::Firmware => share_board(&a.boards, &e.boards),
            _ => e.name == a.name,
        };
        if related && !out.iter().any(|o| o.payload_sha256 == e.payload_sha256) {
            out.push(e);
            if out.len() == MAX_BASES {
                break;
            }
        }
    }
    Ok(out)
}

/// The streams of `payload`: compressed, and a delta from each base (`(artifact id, payload
/// sha256, payload)`), each kept only if it is shorter than the payload itself. The deltas are
/// made on threads of their own (bsdiff is the costly part of an upload).
pub fn make(payload: &[u8], bases: &[(i64, String, Vec<u8>)]) -> Vec<Made> {
    let (compressed, deltas) = std::thread::scope(|s| {
        let deltas: Vec<_> = bases
            .iter()
            .map(|(id, sha, base)| {
                s.spawn(move || {
                    delta::encode::delta(base, payload).map(|bytes| Made {
                        base: Some((*id, sha.clone())),
                        bytes,
                    })
                })
            })
            .collect();
        let compressed = delta::encode::compress(payload).map(|bytes| Made { base: None, bytes });
        let deltas: Vec<_> = deltas.into_iter().map(|h| h.join()).collect();
        (compressed, deltas)
    });
    let mut out = Vec::new();
    for made in std::iter::once(Ok(compressed)).chain(deltas) {
        match made {
            Ok(Ok(m)) if m.bytes.len() < payload.len() => out.push(m),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => crate::log::warn("stream_not_made", &[("reason", e.to_string())]),
            Err(_) => crate::log::warn("stream_not_made", &[("reason", "encoder panicked".into())]),
        }
    }
    out
}

/// Makes and stores the streams of artifact `a` (its payload `payload`, already stored): the
/// base payloads are read from DATA/artifacts, each stream written to DATA/streams, then its row.
pub fn make_for(
    conn: &mut AnyConnection,
    data: &Path,
    a: &Artifact,
    payload: &[u8],
) -> Result<Vec<Stream>, crate::error::ApiError> {
    let mut inputs = Vec::new();
    for b in bases(conn, a)? {
        match std::fs::read(store::payload_path(data, &b.payload_sha256)) {
            Ok(bytes) => inputs.push((b.id, b.payload_sha256, bytes)),
            // A base whose payload is gone makes no delta; the others still do.
            Err(e) => crate::log::warn(
                "stream_base_missing",
                &[("artifact", b.id.to_string()), ("reason", e.to_string())],
            ),
        }
    }
    let mut stored = Vec::new();
    for m in make(payload, &inputs) {
        let sha256 = store::write_addressed(&data.join("streams"), &m.bytes)?;
        stored.push(insert(conn, a.id, &m, &sha256)?);
    }
    Ok(stored)
}

/// Stores a stream's row; returns it (its id from `RETURNING`).
pub fn insert(
    conn: &mut AnyConnection,
    artifact_id: i64,
    m: &Made,
    sha256: &str,
) -> QueryResult<Stream> {
    let id = diesel::insert_into(streams::table)
        .values((
            streams::artifact_id.eq(artifact_id),
            streams::base_artifact_id.eq(m.base.as_ref().map(|b| b.0)),
            streams::base_sha256.eq(m.base.as_ref().map(|b| b.1.clone())),
            streams::len.eq(m.bytes.len() as i64),
            streams::sha256.eq(sha256),
        ))
        .returning(streams::id)
        .get_result::<i64>(conn)?;
    streams::table
        .find(id)
        .select(Stream::as_select())
        .first(conn)
}

pub fn get(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Stream>> {
    streams::table
        .find(id)
        .select(Stream::as_select())
        .first(conn)
        .optional()
}

/// An artifact's streams, in id order.
pub fn of_artifact(conn: &mut AnyConnection, artifact_id: i64) -> QueryResult<Vec<Stream>> {
    streams::table
        .filter(streams::artifact_id.eq(artifact_id))
        .order(streams::id)
        .select(Stream::as_select())
        .load(conn)
}

/// The payload digests a device that checked in with `c` holds as the base for an update to
/// `a`: the payloads of the artifacts of the version it runs (firmware: its reported version
/// for its board; a model: its active model's name and version).
fn held_bases(
    conn: &mut AnyConnection,
    a: &Artifact,
    c: &protocol::CheckIn<'_>,
) -> QueryResult<Vec<String>> {
    let (name, version) = match a.component() {
        ComponentKind::Firmware => (None, c.firmware.version.to_string()),
        _ => match c.model {
            Some(m) => (Some(m.name), m.version.to_string()),
            None => return Ok(Vec::new()),
        },
    };
    let mut q = artifacts::table
        .filter(artifacts::kind.eq(&a.kind))
        .filter(artifacts::version.eq(version))
        .select((artifacts::boards, artifacts::payload_sha256))
        .into_boxed();
    if let Some(name) = name {
        q = q.filter(artifacts::name.eq(name));
    }
    let rows: Vec<(String, String)> = q.load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|(boards, _)| name.is_some() || boards.split(',').any(|b| b == c.board))
        .map(|(_, sha)| sha)
        .collect())
}

/// The stream a device that checked in with `c` is offered with its update to `a`: none unless
/// it decodes FDL1 streams; else the shortest delta from a payload it holds (the version it
/// runs), else the compressed stream, else none.
pub fn offer(
    conn: &mut AnyConnection,
    a: &Artifact,
    c: &protocol::CheckIn<'_>,
) -> QueryResult<Option<Stream>> {
    if c.streams.unwrap_or(0) & protocol::STREAM_FDL1 == 0 {
        return Ok(None);
    }
    let all = of_artifact(conn, a.id)?;
    if all.is_empty() {
        return Ok(None);
    }
    let held = held_bases(conn, a, c)?;
    let delta = all
        .iter()
        .filter(|s| s.base_sha256.as_ref().is_some_and(|b| held.contains(b)))
        .min_by_key(|s| s.len);
    let compressed = all.iter().find(|s| s.base_sha256.is_none());
    Ok(delta.or(compressed).cloned())
}

/// The bytes of stream `id` if it is one of release `release`'s (None: unknown, or another
/// release's).
pub fn of_release(
    conn: &mut AnyConnection,
    data: &Path,
    release: i64,
    id: i64,
) -> Result<Option<Vec<u8>>, crate::error::ApiError> {
    match get(conn, id)? {
        Some(s) if s.artifact_id == release => Ok(Some(std::fs::read(path(data, &s.sha256))?)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_are_shared_by_name() {
        assert!(share_board("a,b", "b"));
        assert!(!share_board("a,b", "c,ab"));
        assert!(!share_board("", ""));
    }
}
