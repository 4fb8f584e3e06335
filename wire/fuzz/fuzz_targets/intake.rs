//! Fuzzes what a server does with the bytes of a call: the byte sequence is cut into
//! frames as the transport reads them (5-byte header, then the payload, refused beyond the
//! configured maxima), and every message frame, and the whole input taken as one message,
//! goes through the decode → authorize → admit gate (`walb_wire::intake::request`) for
//! every pair of sender and receiver roles. Nothing may panic; whatever is admitted must
//! be a request the sender's role may send to the receiver's, within the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_wire::frame::{FrameHeader, FrameKind, FRAME_HEADER_LEN};
use walb_wire::{admit, authorize, Role, WireConfig};

fn gate(payload: &[u8], wire: &WireConfig) {
    for peer in Role::ALL {
        for own in Role::ALL {
            if let Ok(request) = walb_wire::intake::request(payload, peer, own, wire) {
                assert!(authorize(peer, own, request.op_class()).is_ok());
                assert!(admit::request(&request, &wire.limits).is_ok());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let wire = WireConfig::default();
    gate(data, &wire);
    let mut rest = data;
    while rest.len() >= FRAME_HEADER_LEN {
        let mut head = [0u8; FRAME_HEADER_LEN];
        head.copy_from_slice(&rest[..FRAME_HEADER_LEN]);
        rest = &rest[FRAME_HEADER_LEN..];
        let Ok(h) = FrameHeader::parse(head, wire.chunk_frame_len_max()) else {
            return;
        };
        if h.kind != FrameKind::Chunk && h.len > wire.msg_len_max {
            return;
        }
        let len = (h.len as usize).min(rest.len());
        let (payload, next) = rest.split_at(len);
        if h.kind == FrameKind::Msg {
            gate(payload, &wire);
        }
        rest = next;
    }
});
