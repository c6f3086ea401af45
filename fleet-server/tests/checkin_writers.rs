//! Two check-in writers (two servers on one database) flushing the same devices at once:
//! neither transaction fails (on PostgreSQL, rows locked in different orders deadlock).

mod support;

use artifact::Version;
use fleet_server::checkins::Checkins;

const DEVICES: usize = 300;

fn ids() -> Vec<String> {
    (0..DEVICES).map(|i| format!("writer-{i:03}")).collect()
}

/// A writer with a check-in of every device pending.
fn pending(ids: &[String], minor: u32) -> Checkins {
    let w = Checkins::default();
    for id in ids {
        w.record(&support::idle_check_in(id, Version::new(1, minor, 0)));
    }
    w
}

#[test]
fn two_writers_flush_the_same_devices_without_failing() {
    for backend in support::backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            support::Backend::Postgres => support::postgres_schema(),
            support::Backend::Sqlite => dir.path().join("fleet.db").display().to_string(),
        };
        let pool = fleet_server::db::open(&url).unwrap();
        let ids = ids();
        {
            let mut conn = pool.get().unwrap();
            for id in &ids {
                assert!(fleet_server::store::enroll(&mut conn, id, "mps2-an386", "", id).unwrap());
            }
        }
        for round in 0..10u32 {
            let writers = [pending(&ids, 2 * round), pending(&ids, 2 * round + 1)];
            let written: Vec<usize> = std::thread::scope(|s| {
                let flushes: Vec<_> = writers
                    .iter()
                    .map(|w| {
                        let pool = pool.clone();
                        s.spawn(move || w.flush(&mut pool.get().unwrap()))
                    })
                    .collect();
                flushes
                    .into_iter()
                    .map(|f| {
                        f.join()
                            .unwrap()
                            .unwrap_or_else(|e| panic!("{backend:?} round {round}: {e}"))
                    })
                    .collect()
            });
            assert_eq!(written, [DEVICES, DEVICES], "{backend:?} round {round}");
        }
    }
}
