//! Daemon↔agent frames: the frame reader, then `proto::agent::decode`; what decodes must
//! re-encode to the same message.
#![no_main]

use crew::proto::agent::{decode, Decoded};
use crew::proto::frame::{read_frame, RawFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        while let Ok(Some(f)) = read_frame(&mut r).await {
            if let Decoded::Msg { id, msg } = decode(&f) {
                let (kind, payload) = msg.encode();
                let again = decode(&RawFrame { kind, id, payload });
                assert_eq!(again, Decoded::Msg { id, msg });
            }
        }
    });
});
