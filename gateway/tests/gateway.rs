//! The gateway against a real fleet server in process, with test devices (the real agent
//! session over a NOR flash model) on TCP links: a rollout through one gateway with one
//! artifact download, a server outage with reports spooled and delivered once, a gateway
//! restart on the same state directory, hostile or broken input on links, and push: a
//! rollout reaching idle boards through their long-poll at once, not at their next poll, and
//! a rollback sending a canary back as fast.

mod support;

use protocol::{
    BootStatus, CheckIn, Command, Counters, DeviceFrame, Firmware, Hello, Report, ServerFrame, Step,
};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{Device, Proxy, wait_for};

const VERSION: &str = "1.0.0";
const LONG: Duration = Duration::from_secs(45);

/// Every device's acknowledged reports are at the server, each exactly once.
fn assert_reports_at_server(s: &support::Server, devices: &[Device]) -> u64 {
    let mut total = 0;
    for d in devices {
        let acked = d.status().acked_set();
        assert!(acked.len() >= 3, "{}: {acked:?}", d.id);
        assert_eq!(support::server_reports(s, &d.id), acked, "{}", d.id);
        total += acked.len() as u64;
    }
    total
}

#[test]
fn rollout_through_one_gateway_fetches_the_release_once() {
    let s = support::server();
    let data = tempfile::tempdir().unwrap();
    let gw = support::gateway(&s.base, data.path(), "127.0.0.1:0");
    rollout_once(&s, gw, data);
}

/// The same over HTTPS with mTLS: the gateway trusts the server's CA and presents its client
/// certificate; the devices are bound to it (`gateway:NAME`).
#[test]
fn rollout_through_one_gateway_over_mutual_tls() {
    let s = support::tls_server();
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let data = tempfile::tempdir().unwrap();
    let gw = support::tls_gateway(&s, data.path(), "127.0.0.1:0");
    rollout_once(&s, gw, data);
}

/// A bound device's credential from a gateway without the certificate is refused: nothing
/// of it reaches the rollout, and its reports wait in the spool.
#[test]
fn a_gateway_without_its_certificate_cannot_speak_for_bound_devices() {
    let s = support::tls_server();
    let cred = support::enroll(&s, "gw-m-01");
    let data = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::new(&s.base, data.path()).listen("127.0.0.1:0");
    config.ca_file = Some(s.tls.as_ref().unwrap().ca.clone());
    let gw = gateway::spawn(config).unwrap();
    let device = Device::start("gw-m-01", &cred, gw.addr().unwrap());
    wait_for("the link", LONG, || gw.stats().links == 1);
    // Its first check-in goes out at once; the server answers 403 gateway_required.
    std::thread::sleep(Duration::from_secs(3));
    let metrics = s.op.get("/metrics").unwrap();
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.lines().any(|l| l == "fleet_checkins_total 0"),
        "{metrics}"
    );
    drop(device);
    let st = gw.shutdown();
    assert_eq!(st.checkins_forwarded, 0, "{st:?}");
}

/// The server's count of long-poll check-ins waiting now.
fn waiting_at_server(s: &support::Server) -> u64 {
    let metrics = s.op.get("/metrics").unwrap();
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fleet_longpoll_waiting "))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn idle_boards_hear_of_a_rollout_at_once_through_the_gateways_long_poll() {
    // Idle devices are told to poll every 10 minutes: only push can bring the release sooner.
    let s = support::server_polling(600);
    let data = tempfile::tempdir().unwrap();
    let gw = support::gateway(&s.base, data.path(), "127.0.0.1:0");
    let ids = ["gw-p-01", "gw-p-02"];
    let devices: Vec<Device> = ids
        .iter()
        .map(|id| Device::start(id, &support::enroll(&s, id), gw.addr().unwrap()))
        .collect();
    // Each checked in once, was answered idle, and the gateway now waits at the server for it.
    wait_for("two long-polls waiting", LONG, || {
        waiting_at_server(&s) == 2
    });
    let forwarded = gw.stats().checkins_forwarded;
    assert_eq!(forwarded, 2, "{:?}", gw.stats());
    let (release, _) = support::upload_good(&s);
    let started = Instant::now();
    let rollout = support::rollout(&s, release);
    wait_for("both boards given the release", LONG, || {
        devices.iter().all(|d| d.status().updates >= 1)
    });
    let reached = started.elapsed();
    eprintln!("rollout created to both boards given the release: {reached:?}");
    assert!(reached < Duration::from_secs(2), "{reached:?}");
    let v = s.op.wait_rollout(rollout, LONG).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    wait_for("devices done", LONG, || {
        devices.iter().all(|d| d.status().done(VERSION))
    });
    let st = gw.stats();
    // One CheckInNow each: the command came as the answer to the board's own check-in.
    assert_eq!(st.pushes, 2, "{st:?}");
    assert!(devices.iter().all(|d| d.status().updates == 1));
    // Idle again after the update: the gateway waits for them again.
    wait_for("long-polls open again", LONG, || waiting_at_server(&s) == 2);

    // 1.1.0 to a canary (the next stage soaks for an hour), then an operator's rollback: the
    // canary goes back to 1.0.0 at once; the other board, woken too, has nothing to do.
    let bundle = fleet_sim::release::model_bundle(
        &fleet_sim::fixtures::GOOD,
        "digits",
        artifact::Version::new(1, 1, 0),
        2,
        fleet_sim::device::BOARD,
        fleet_sim::release::STRICT,
        &[testkit::keys::signing_key()],
    )
    .unwrap();
    let newer = s.op.upload(bundle).unwrap();
    let rollout =
        s.op.rollout(&serde_json::json!({
            "artifact_id": newer,
            "stages": ["1", "100%"],
            "soak_seconds": 3600,
            "min_accuracy": 0.9,
            "max_latency_ms": 10,
        }))
        .unwrap();
    wait_for("the canary on 1.1.0", LONG, || {
        devices.iter().any(|d| d.status().done("1.1.0"))
    });
    wait_for("long-polls open again", LONG, || waiting_at_server(&s) == 2);
    let started = Instant::now();
    s.op.post(
        &format!("/api/rollouts/{rollout}/rollback"),
        &serde_json::json!({}),
    )
    .unwrap();
    wait_for("the canary back on 1.0.0", LONG, || {
        devices
            .iter()
            .all(|d| d.status().model_version.as_deref() == Some(VERSION))
    });
    let back = started.elapsed();
    eprintln!("rollback to the canary back on its previous model: {back:?}");
    assert!(back < Duration::from_secs(2), "{back:?}");
    let v = s.op.get(&format!("/api/rollouts/{rollout}")).unwrap();
    assert_eq!(v["state"], "halted", "{v:#}");
    // Two for the first rollout, one each for the canary's update and its way back.
    assert_eq!(gw.stats().pushes, 4, "{:?}", gw.stats());
    drop(devices);
    // The links closed: their long-polls are given up (the server answers them at their end).
    drop(gw);
}

fn rollout_once(s: &support::Server, gw: gateway::Handle, data: tempfile::TempDir) {
    let ids = ["gw-a-01", "gw-a-02", "gw-a-03"];
    let creds: Vec<String> = ids.iter().map(|id| support::enroll(s, id)).collect();
    let (release, size) = support::upload_good(s);
    let rollout = support::rollout(s, release);
    let addr = gw.addr().unwrap();
    let devices: Vec<Device> = ids
        .iter()
        .zip(&creds)
        .map(|(id, c)| Device::start(id, c, addr))
        .collect();

    let v = s.op.wait_rollout(rollout, LONG).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    wait_for("devices done", LONG, || {
        devices.iter().all(|d| d.status().done(VERSION))
    });
    let acked: u64 = devices
        .iter()
        .map(|d| d.status().acked_set().len() as u64)
        .sum();
    wait_for("reports delivered", LONG, || {
        gw.stats().reports_delivered == acked
    });
    assert_eq!(assert_reports_at_server(s, &devices), acked);

    let st = gw.stats();
    assert_eq!(st.artifact_fetches, 1, "{st:?}");
    assert_eq!(st.uplink_bytes, size, "one download of the payload: {st:?}");
    assert_eq!(st.device_bytes, 3 * size, "{st:?}");
    assert_eq!(st.chunks_forwarded, 0, "{st:?}");
    assert!(st.chunks_from_cache >= 3 * size.div_ceil(4096), "{st:?}");
    assert_eq!(st.links, 3, "{st:?}");
    assert_eq!(st.reports_spooled, acked, "{st:?}");
    assert_eq!(st.reports_rejected, 0, "{st:?}");
    assert!(st.checkins_forwarded >= 3, "{st:?}");
    assert_eq!(
        std::fs::read(data.path().join("cache").join(release.to_string()))
            .unwrap()
            .len() as u64,
        size
    );

    drop(devices);
    let last = gw.shutdown();
    let written: gateway::Stats =
        serde_json::from_slice(&std::fs::read(data.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(written, last);
}

/// Two boards that decode streams and hold no model: the server offers each the release's
/// compressed stream, and the gateway fetches it once (`GET .../streams/{id}`) and serves both
/// from its cache, on disk beside the payloads; the server counts the one fetch for the board
/// whose credential made it.
#[test]
fn a_stream_is_fetched_once_and_served_to_two_boards() {
    let s = support::server();
    let data = tempfile::tempdir().unwrap();
    let gw = support::gateway(&s.base, data.path(), "127.0.0.1:0");
    let ids = ["gw-s-01", "gw-s-02"];
    let creds: Vec<String> = ids.iter().map(|id| support::enroll(&s, id)).collect();
    let (release, size) = support::upload_good(&s);
    let streams = s.op.get(&format!("/api/artifacts/{release}")).unwrap()["streams"].clone();
    assert_eq!(streams.as_array().unwrap().len(), 1, "{streams}");
    let (stream, len) = (
        streams[0]["id"].as_u64().unwrap(),
        streams[0]["len"].as_u64().unwrap(),
    );
    assert!(len < size, "{len} of {size}");
    let rollout = support::rollout(&s, release);
    let addr = gw.addr().unwrap();
    let devices: Vec<Device> = ids
        .iter()
        .zip(&creds)
        .map(|(id, c)| Device::start_decoding(id, c, addr, true))
        .collect();
    let v = s.op.wait_rollout(rollout, LONG).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    wait_for("devices done", LONG, || {
        devices.iter().all(|d| d.status().done(VERSION))
    });

    let st = gw.stats();
    assert_eq!(st.artifact_fetches, 1, "{st:?}");
    assert_eq!(st.uplink_bytes, len, "one download of the stream: {st:?}");
    assert_eq!(st.device_bytes, 2 * len, "{st:?}");
    assert_eq!(st.chunks_forwarded, 0, "{st:?}");
    assert!(st.chunks_from_cache >= 2 * len.div_ceil(4096), "{st:?}");
    let cached = data
        .path()
        .join("cache")
        .join(format!("{release}.stream-{stream}"));
    assert_eq!(std::fs::read(cached).unwrap().len() as u64, len);
    assert!(!data.path().join("cache").join(release.to_string()).exists());
    let mut sent: Vec<u64> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["bytes_sent"].as_u64().unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, [0, len]);
    drop(devices);

    // By hand on a board's link: its release's stream from the cache; a stream id that is not
    // one of that release's is the server's to refuse, and nothing of it is cached.
    let mut raw = Raw::open(addr);
    raw.send(&hello(ids[0], &creds[0]));
    raw.send(&check_in(ids[0]));
    assert!(matches!(raw.next(LONG), Got::Frame(_)));
    let chunk = |stream: u64| {
        support::framed(&DeviceFrame::ChunkRequest(protocol::ChunkRequest {
            release: release as u64,
            offset: 0,
            len: 64,
            stream: Some(stream),
        }))
    };
    raw.send(&chunk(stream));
    let Got::Frame(f) = raw.next(LONG) else {
        panic!("no chunk")
    };
    match ServerFrame::decode(&f).unwrap() {
        ServerFrame::Chunk(c) => {
            assert_eq!((c.stream, c.data.len()), (Some(stream), 64));
        }
        other => panic!("{other:?}"),
    }
    raw.send(&chunk(stream + 1000));
    assert_eq!(raw.next(Duration::from_millis(500)), Got::Nothing);
    let st = gw.stats();
    assert_eq!(st.artifact_fetches, 1, "{st:?}");
    assert_eq!(st.uplink_bytes, len, "{st:?}");
    assert_eq!(st.chunks_forwarded, 0, "{st:?}");
    let cache: Vec<_> = std::fs::read_dir(data.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cache, [format!("{release}.stream-{stream}")]);
}

/// Waits while the server is unreachable until every device that got the update before the
/// outage has run it and had every report acknowledged (by the gateway alone).
fn wait_done_offline(proxy: &Proxy, devices: &[Device]) -> usize {
    wait_for("the outage", LONG, || !proxy.is_up());
    let mut done = 0;
    wait_for("devices done offline", LONG, || {
        let st: Vec<_> = devices.iter().map(Device::status).collect();
        done = st.iter().filter(|s| s.done(VERSION)).count();
        st.iter().all(|s| s.updates == 0 || s.done(VERSION))
    });
    assert!(done >= 1);
    done
}

#[test]
fn reports_survive_a_server_outage_and_arrive_once() {
    let s = support::server();
    let ids = ["gw-b-01", "gw-b-02", "gw-b-03"];
    let creds: Vec<String> = ids.iter().map(|id| support::enroll(&s, id)).collect();
    let (release, size) = support::upload_good(&s);
    let rollout = support::rollout(&s, release);
    let proxy = Proxy::start(s.addr);
    proxy.go_down_at_first_report();
    let data = tempfile::tempdir().unwrap();
    let gw = support::gateway(&proxy.base(), data.path(), "127.0.0.1:0");
    let addr = gw.addr().unwrap();
    let devices: Vec<Device> = ids
        .iter()
        .zip(&creds)
        .map(|(id, c)| Device::start(id, c, addr))
        .collect();

    // The server went away at the first report: everything after was acknowledged by the
    // gateway alone, from its disk.
    wait_done_offline(&proxy, &devices);
    let acked: u64 = devices
        .iter()
        .map(|d| d.status().acked_set().len() as u64)
        .sum();
    let st = gw.stats();
    assert_eq!(st.reports_delivered, 0, "{st:?}");
    assert_eq!(st.reports_spooled, acked, "{st:?}");
    assert_eq!(support::spooled_files(data.path()) as u64, acked);
    for id in ids {
        assert_eq!(support::server_reports(&s, id), Vec::<u32>::new(), "{id}");
    }
    // Retries while down do not lose or deliver anything.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(gw.stats().reports_delivered, 0);
    assert_eq!(support::spooled_files(data.path()) as u64, acked);

    proxy.set_up(true);
    let v = s.op.wait_rollout(rollout, LONG).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    wait_for("devices done", LONG, || {
        devices.iter().all(|d| d.status().done(VERSION))
    });
    let acked: u64 = devices
        .iter()
        .map(|d| d.status().acked_set().len() as u64)
        .sum();
    wait_for("reports delivered", LONG, || {
        gw.stats().reports_delivered == acked
    });
    assert_eq!(assert_reports_at_server(&s, &devices), acked);
    assert_eq!(support::spooled_files(data.path()), 0);
    let st = gw.stats();
    assert_eq!(
        st.reports_spooled, acked,
        "each report spooled once: {st:?}"
    );
    assert_eq!(st.reports_rejected, 0, "{st:?}");
    assert_eq!(st.artifact_fetches, 1, "{st:?}");
    assert_eq!(st.uplink_bytes, size, "{st:?}");
    assert_eq!(st.device_bytes, 3 * size, "{st:?}");
}

#[test]
fn a_restarted_gateway_delivers_its_spool_and_serves_its_cache_from_disk() {
    let s = support::server();
    let ids = ["gw-c-01", "gw-c-02", "gw-c-03"];
    let creds: Vec<String> = ids.iter().map(|id| support::enroll(&s, id)).collect();
    let (release, size) = support::upload_good(&s);
    let rollout = support::rollout(&s, release);
    let proxy = Proxy::start(s.addr);
    proxy.go_down_at_first_report();
    let data = tempfile::tempdir().unwrap();
    let gw = support::gateway(&proxy.base(), data.path(), "127.0.0.1:0");
    let addr = gw.addr().unwrap();
    // Two devices now; the third comes after the restart.
    let mut devices: Vec<Device> = ids[..2]
        .iter()
        .zip(&creds)
        .map(|(id, c)| Device::start(id, c, addr))
        .collect();
    wait_done_offline(&proxy, &devices);
    let spooled = support::spooled_files(data.path()) as u64;
    assert!(spooled >= 3);

    let before = gw.shutdown();
    assert_eq!(before.artifact_fetches, 1, "{before:?}");
    assert_eq!(before.reports_delivered, 0, "{before:?}");
    let written: gateway::Stats =
        serde_json::from_slice(&std::fs::read(data.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(written, before);
    assert_eq!(support::spooled_files(data.path()) as u64, spooled);

    // The same address and state directory, the server back.
    proxy.set_up(true);
    let gw = support::gateway(&proxy.base(), data.path(), &addr.to_string());
    assert_eq!(gw.stats(), before, "counters survive the restart");
    wait_for("spool delivered after the restart", LONG, || {
        gw.stats().reports_delivered == spooled
    });
    devices.push(Device::start(ids[2], &creds[2], addr));

    let v = s.op.wait_rollout(rollout, LONG).unwrap();
    assert_eq!(v["state"], "completed", "{v:#}");
    wait_for("devices done", LONG, || {
        devices.iter().all(|d| d.status().done(VERSION))
    });
    let acked: u64 = devices
        .iter()
        .map(|d| d.status().acked_set().len() as u64)
        .sum();
    wait_for("reports delivered", LONG, || {
        gw.stats().reports_delivered == acked
    });
    assert_eq!(assert_reports_at_server(&s, &devices), acked);
    let st = gw.stats();
    assert_eq!(st.artifact_fetches, 1, "the cache came from disk: {st:?}");
    assert_eq!(st.uplink_bytes, size, "{st:?}");
    assert_eq!(st.device_bytes, 3 * size, "{st:?}");
    assert_eq!(st.chunks_forwarded, 0, "{st:?}");
    assert!(
        st.links >= 5,
        "two links, two reconnections, one new: {st:?}"
    );
    drop(devices);
    gw.shutdown();
}

// ---- bad input -----------------------------------------------------------------------------

fn check_in(id: &str) -> Vec<u8> {
    support::framed(&DeviceFrame::CheckIn(CheckIn {
        device_id: id,
        board: fleet_sim::device::BOARD,
        firmware: Firmware {
            version: artifact::Version::new(1, 0, 0),
            status: BootStatus::Confirmed,
        },
        model: None,
        update: None,
        validation: None,
        counters: Counters::default(),
        runtime_abi: None,
        wait_ms: None,
        streams: None,
    }))
}

fn hello(id: &str, credential: &str) -> Vec<u8> {
    support::framed(&DeviceFrame::Hello(Hello {
        device_id: id,
        credential,
    }))
}

fn report(id: &str, seq: u32) -> Vec<u8> {
    support::framed(&DeviceFrame::Report(Report {
        device_id: id,
        seq,
        release: 4242,
        component: artifact::ComponentKind::Model,
        version: artifact::Version::new(1, 0, 0),
        step: Step::Downloaded,
    }))
}

/// A raw link, as a device with a hand-made byte stream.
struct Raw<S = TcpStream> {
    stream: S,
    received: Vec<u8>,
}

/// What came back on a raw link within a wait.
#[derive(Debug, PartialEq)]
enum Got {
    Frame(Vec<u8>),
    Nothing,
    Closed,
}

impl Raw {
    fn open(addr: std::net::SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Raw {
            stream,
            received: Vec::new(),
        }
    }
}

impl<S: Read + Write> Raw<S> {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame's payload, or nothing within `wait`, or the end of the link.
    fn next(&mut self, wait: Duration) -> Got {
        let until = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = self.received.iter().position(|&b| b == 0) {
                let frame: Vec<u8> = self.received.drain(..=end).collect();
                let mut d = protocol::link::Deframer::<{ protocol::link::MAX_ENCODED }>::new();
                for &b in &frame {
                    if let Some(payload) = d.push(b) {
                        return Got::Frame(payload.unwrap().to_vec());
                    }
                }
                unreachable!("a delimiter ends every frame");
            }
            if Instant::now() > until {
                return Got::Nothing;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Got::Closed,
            }
        }
    }

    fn expect_command(&mut self) -> Vec<u8> {
        match self.next(Duration::from_secs(10)) {
            Got::Frame(f) => {
                assert!(
                    matches!(
                        ServerFrame::decode(&f),
                        Ok(ServerFrame::Command(Command::Idle { .. }))
                    ),
                    "{f:?}"
                );
                f
            }
            other => panic!("expected a command, got {other:?}"),
        }
    }

    fn expect_ack(&mut self, seq: u32) {
        match self.next(Duration::from_secs(10)) {
            Got::Frame(f) => assert_eq!(
                ServerFrame::decode(&f).unwrap(),
                ServerFrame::ReportAck { seq }
            ),
            other => panic!("expected an acknowledgement, got {other:?}"),
        }
    }
}

#[test]
fn bad_input_is_dropped_or_closes_only_its_own_link() {
    let s = support::server();
    let good = support::enroll(&s, "gw-d-good");
    let other = support::enroll(&s, "gw-d-other");
    support::enroll(&s, "gw-d-third");
    let data = tempfile::tempdir().unwrap();
    let gw = support::gateway(&s.base, data.path(), "127.0.0.1:0");
    let addr = gw.addr().unwrap();

    // Noise, a frame too long for any buffer, a bad CRC and a valid frame that is no device
    // frame: each dropped, and the link goes on.
    let mut a = Raw::open(addr);
    a.send(&[0x13, 0x37, 0xFF, 0x00, 0x01, 0x00, 0x00, 0x42]);
    a.send(&vec![0x5A; 3 * protocol::link::MAX_ENCODED]);
    a.send(&[0]);
    let mut bad_crc = check_in("gw-d-good");
    bad_crc[3] ^= 0x10;
    a.send(&bad_crc);
    a.send(&support::link_bytes(&[0x82, 0x09, 0xF6]));
    a.send(&hello("gw-d-good", &good));
    a.send(&support::link_bytes(&[0x82, 0x00, 0xA0]));
    a.send(&check_in("gw-d-good"));
    a.expect_command();

    // A frame before Hello closes the link.
    let mut b = Raw::open(addr);
    b.send(&check_in("gw-d-good"));
    assert_eq!(b.next(Duration::from_secs(10)), Got::Closed);

    // Frames naming another device than the Hello are dropped; the link goes on.
    let mut c = Raw::open(addr);
    c.send(&hello("gw-d-good", &good));
    c.send(&check_in("gw-d-other"));
    c.send(&report("gw-d-other", 1));
    assert_eq!(c.next(Duration::from_millis(700)), Got::Nothing);
    c.send(&report("gw-d-good", 7));
    c.expect_ack(7);
    c.send(&report("gw-d-good", 7)); // the acknowledgement was lost: the same report again
    c.expect_ack(7);
    c.send(&check_in("gw-d-good"));
    c.expect_command();
    assert_eq!(support::server_reports(&s, "gw-d-good"), [7]);
    assert_eq!(support::server_reports(&s, "gw-d-other"), Vec::<u32>::new());

    // A credential the server does not know: the first check-in closes the link.
    let mut d = Raw::open(addr);
    d.send(&hello("gw-d-good", "not-a-credential"));
    d.send(&check_in("gw-d-good"));
    assert_eq!(d.next(Duration::from_secs(10)), Got::Closed);

    // A device id that would name the spool's parent directory.
    let mut e = Raw::open(addr);
    e.send(&hello("..", &good));
    assert_eq!(e.next(Duration::from_secs(10)), Got::Closed);

    // Another device's credential: the report is spooled and acknowledged, then refused by the
    // server (403) and kept in rejected/ for an operator.
    let mut f = Raw::open(addr);
    f.send(&hello("gw-d-third", &other));
    f.send(&report("gw-d-third", 3));
    f.expect_ack(3);
    wait_for("the refused report set aside", LONG, || {
        gw.stats().reports_rejected == 1
    });
    assert!(
        data.path()
            .join("rejected/gw-d-third/0000000003.cbor")
            .is_file()
    );
    assert_eq!(support::files_under(&data.path().join("spool"), ".cbor"), 0);
    assert_eq!(support::server_reports(&s, "gw-d-third"), Vec::<u32>::new());

    // The first link is still served.
    a.send(&check_in("gw-d-good"));
    a.expect_command();
    let st = gw.stats();
    assert_eq!(st.links, 6, "{st:?}");
    assert_eq!(st.reports_rejected, 1, "{st:?}");
    assert_eq!(st.chunks_forwarded + st.chunks_from_cache, 0, "{st:?}");
    gw.shutdown();
}

#[test]
fn a_board_on_a_serial_port() {
    let s = support::server();
    let credential = support::enroll(&s, "gw-e-board");
    let (master, port) = support::pty();
    let data = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::new(&s.base, data.path());
    config.serial = vec![port.clone()];
    let gw = gateway::spawn(config).unwrap();
    assert_eq!(gw.addr(), None);
    // The link counts once the port is open and set raw.
    wait_for("the port opened", LONG, || gw.stats().links == 1);
    let stty = std::process::Command::new("stty")
        .arg("-F")
        .arg(&port)
        .arg("-a")
        .output()
        .unwrap();
    let settings = String::from_utf8_lossy(&stty.stdout);
    for want in [
        "speed 115200 baud",
        "cs8",
        "-parenb",
        "-cstopb",
        "-echo",
        "-icanon",
        "-opost",
    ] {
        assert!(settings.contains(want), "{want} not in {settings}");
    }

    let mut board = Raw {
        stream: master,
        received: Vec::new(),
    };
    // Line noise as the board powers up; the board ends it with a delimiter before its Hello.
    board.send(&[0x42, 0x17, 0x00]);
    board.send(&hello("gw-e-board", &credential));
    board.send(&check_in("gw-e-board"));
    // Raw mode: the first bytes back are the server's answer, not an echo of ours.
    board.expect_command();
    board.send(&report("gw-e-board", 1));
    board.expect_ack(1);
    wait_for("the report delivered", LONG, || {
        support::server_reports(&s, "gw-e-board") == [1]
    });
    // The server stores the report before it answers; the spool counts it after the answer.
    wait_for("the delivery counted", LONG, || {
        gw.stats().reports_delivered == 1
    });
    let st = gw.shutdown();
    assert_eq!(
        (st.links, st.checkins_forwarded, st.reports_delivered),
        (1, 1, 1)
    );
}

#[test]
fn the_binary_says_where_it_listens_and_exits_cleanly_on_sigterm() {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", "127.0.0.1:0"])
        // Flags also come from the environment; nothing needs to answer for this test.
        .env("FLEET_GATEWAY_SERVER", "http://127.0.0.1:1")
        .env("FLEET_GATEWAY_DATA", data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("gateway: listening on ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert_ne!(addr.port(), 0, "the real port");
    let mut link = Raw::open(addr);
    link.send(&check_in("nobody"));
    assert_eq!(link.next(Duration::from_secs(10)), Got::Closed);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let stats: gateway::Stats =
        serde_json::from_slice(&std::fs::read(data.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats.links, 1, "{stats:?}");
}
