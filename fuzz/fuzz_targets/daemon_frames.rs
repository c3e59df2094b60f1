//! Client↔daemon frames: the frame reader, then `decode_request` / `decode_event`; what
//! decodes must re-encode to the same value.
#![no_main]

use crew::proto::daemon::{decode_event, decode_request, encode_event, encode_request};
use crew::proto::frame::{read_frame, RawFrame};
use libfuzzer_sys::fuzz_target;

fn reread(bytes: &[u8]) -> RawFrame {
    RawFrame {
        kind: u16::from_be_bytes([bytes[4], bytes[5]]),
        id: u64::from_be_bytes(bytes[6..14].try_into().expect("8 bytes")),
        payload: bytes[14..].to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        while let Ok(Some(f)) = read_frame(&mut r).await {
            if let Ok(req) = decode_request(&f) {
                let mut v = Vec::new();
                encode_request(f.id, &req, &mut v).expect("re-encode");
                assert_eq!(decode_request(&reread(&v)), Ok(req));
            }
            if let Ok(ev) = decode_event(&f) {
                let mut v = Vec::new();
                encode_event(f.id, &ev, &mut v).expect("re-encode");
                assert_eq!(decode_event(&reread(&v)), Ok(ev));
            }
        }
    });
});
