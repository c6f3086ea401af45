//! The rollout driver: at every tick, each running rollout whose lease this process holds is
//! judged by `decide::evaluate` and the decision applied. The lease (a row update that only
//! succeeds when the lease is free, expired or already ours) makes one process drive a rollout
//! at a time when several share one PostgreSQL; every applied decision re-checks the stage, so
//! a process that lost its lease while thinking changes nothing.

use super::decide::{self, Decision};
use super::error::Error;
use super::{lifecycle, records};
use crate::db::{AnyConnection, DbPool};
use crate::schema::rollouts;
use crate::store::now_ms;
use diesel::prelude::*;
use std::time::Duration;

/// How long a lease lasts without renewal (a crashed driver is replaced after this).
pub const LEASE_MS: i64 = 10_000;

/// Takes or renews the lease on `rollout` for `owner`.
pub fn lease(conn: &mut AnyConnection, rollout: i64, owner: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        rollouts::table.find(rollout).filter(
            rollouts::lease_owner
                .is_null()
                .or(rollouts::lease_owner.eq(owner))
                .or(rollouts::lease_until_ms.lt(now)),
        ),
    )
    .set((
        rollouts::lease_owner.eq(owner),
        rollouts::lease_until_ms.eq(now + LEASE_MS),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// One pass over the running rollouts. Returns the decisions applied (for logs and tests).
pub fn tick(conn: &mut AnyConnection, owner: &str) -> Result<Vec<(i64, Decision)>, Error> {
    let mut applied = Vec::new();
    for id in records::running(conn)? {
        let now = now_ms();
        if !lease(conn, id, owner, now)? {
            continue;
        }
        let r = records::get(conn, id)?;
        let spec = r.spec()?;
        let s = lifecycle::stage_state(conn, &r, &spec)?;
        let decision = decide::evaluate(
            &spec,
            r.stage as usize,
            &s.results,
            s.finished_ms,
            now as u64,
            s.next,
        );
        let done = match &decision {
            Decision::Wait => false,
            Decision::Advance { .. } => lifecycle::advance(conn, id, r.stage)?,
            Decision::Complete => lifecycle::complete(conn, id, r.stage)?,
            Decision::Halt { gate, evidence } => lifecycle::halt(conn, id, gate, evidence)?,
        };
        if done {
            crate::log::info(
                "rollout_decision",
                &[
                    ("rollout", id.to_string()),
                    ("decision", format!("{decision:?}")),
                ],
            );
            applied.push((id, decision));
        }
    }
    Ok(applied)
}

/// Runs `tick` every `every` on a thread of its own, for the life of the process.
/// Check-ins written behind are flushed first: stage starts read what devices run.
pub fn spawn(
    pool: DbPool,
    owner: String,
    every: Duration,
    checkins: std::sync::Arc<crate::checkins::Checkins>,
    waiters: std::sync::Arc<crate::waiters::Waiters>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("rollout-engine".into())
        .spawn(move || {
            loop {
                let outcome = match pool.get() {
                    Ok(mut c) => checkins
                        .flush(&mut c)
                        .map_err(|e| e.to_string())
                        .and_then(|_| tick(&mut c, &owner).map_err(|e| e.to_string()))
                        .and_then(|applied| {
                            // Committed: a stage start or a halt's send-back reaches the
                            // devices waiting in long-poll now, not at their next poll.
                            applied.iter().try_for_each(|(id, _)| {
                                records::wake_devices(&mut c, &waiters, *id)
                                    .map_err(|e| e.to_string())
                            })
                        }),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = outcome {
                    crate::log::warn("rollout_tick_failed", &[("error", e)]);
                }
                std::thread::sleep(every);
            }
        })
        .map(drop)
}
