//! Fuzz target: the provisioned identity record a device reads from its flash at every boot
//! (`agent::provisioning`), on arbitrary bytes. Run: `cargo xtask fuzz`.
#![no_main]

use agent::provisioning::{self, MAX_RECORD, Provisioned};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = provisioning::parse(data) {
        // What parses encodes back to the same record.
        let mut out = [0xFF; MAX_RECORD];
        let n = provisioning::encode(
            Provisioned {
                device_id: id.device_id,
                credential: id.credential,
            },
            &mut out,
        )
        .expect("a parsed identity encodes");
        assert_eq!(&out[..n], &data[..n]);
    }
});
