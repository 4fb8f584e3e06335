//! The gate of a served call: from the bytes of its first message to an admitted
//! [`Request`]. Pure, no IO: the transport runs it on every call it serves, a fuzzer on
//! anything.
//!
//! In order, each step refusing with a [`WireError`] that names what is wrong:
//!
//! 1. Size: at most [`WireConfig::msg_len_max`] bytes (`TooLarge`).
//! 2. Peek: the operation class from the first bytes of the postcard encoding, the
//!    variant indices of [`Message::Request`] and of [`Request`] (`BadRequest` if it is
//!    not a request or not a known one).
//! 3. Authorize: [`crate::auth::authorize`] of the peer's role, our role and that class
//!    (`Forbidden`) — before the body is decoded, so a peer never makes us decode (and
//!    allocate for) what it may not ask.
//! 4. Decode the whole message (`BadRequest`; nothing may follow it).
//! 5. Admit: [`crate::admit::request`], the bounds of every field.

use crate::admit;
use crate::auth::{authorize, OpClass};
use crate::config::WireConfig;
use crate::identity::Role;
use crate::msg::{ErrorCode, Message, Request, WireError};

/// Index of [`Message::Request`] in the postcard encoding of a [`Message`].
const MESSAGE_REQUEST: u32 = 0;

/// Decodes, authorizes and admits the first message of a call (see the module doc).
pub fn request(
    payload: &[u8],
    peer: Role,
    own: Role,
    wire: &WireConfig,
) -> Result<Request, WireError> {
    if payload.len() > wire.msg_len_max as usize {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "a request of {} bytes; at most {}",
                payload.len(),
                wire.msg_len_max
            ),
        ));
    }
    let class = peek_class(payload)?;
    authorize(peer, own, class)
        .map_err(|denied| WireError::new(ErrorCode::Forbidden, denied.to_string()))?;
    let (msg, rest) = postcard::take_from_bytes::<Message>(payload)
        .map_err(|e| bad(format!("cannot decode message: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes after the request in its message",
            rest.len()
        )));
    }
    let Message::Request(request) = msg else {
        return Err(bad("a call must open with a request"));
    };
    if request.op_class() != class {
        // The peek and the decoder read the same varints; they cannot disagree.
        return Err(WireError::new(
            ErrorCode::Internal,
            format!(
                "request read as {class:?} then decoded as {:?}",
                request.op_class()
            ),
        ));
    }
    admit::request(&request, &wire.limits)?;
    Ok(request)
}

/// The operation class of an encoded [`Message::Request`], from its first bytes only.
pub fn peek_class(payload: &[u8]) -> Result<OpClass, WireError> {
    let (message, rest) = variant(payload)?;
    if message != MESSAGE_REQUEST {
        let got = match message {
            1 => "a reply",
            2 => "a step",
            3 => "an event",
            4 => "an error",
            _ => "an unknown message",
        };
        return Err(bad(format!("a call must open with a request, got {got}")));
    }
    let (index, _) = variant(rest)?;
    // The order of `Request`'s variants (tests check every variant against op_class).
    Ok(match index {
        0 => OpClass::Command,
        1 => OpClass::Query,
        2 => OpClass::Subscribe,
        3 => OpClass::WlogTransfer,
        4 => OpClass::WdiffTransfer,
        5 => OpClass::BackupSync,
        6 => OpClass::Replication,
        n => {
            return Err(bad(format!(
                "unknown request kind {n} (a peer speaking a newer protocol?)"
            )))
        }
    })
}

/// An enum variant index (a postcard varint, read as postcard's decoder reads it).
fn variant(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    postcard::take_from_bytes::<u32>(bytes).map_err(|e| bad(format!("cannot decode message: {e}")))
}

fn bad(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{BackupSync, Command, Query, Reply, Step, Subscribe, SyncStart};
    use proptest::prelude::*;

    fn enc(m: &Message) -> Vec<u8> {
        postcard::to_stdvec(m).unwrap()
    }

    fn req(r: Request) -> Vec<u8> {
        enc(&Message::Request(r))
    }

    fn code(r: Result<Request, WireError>) -> Result<Request, (ErrorCode, String)> {
        r.map_err(|e| (e.code, e.message))
    }

    #[test]
    fn table() {
        let w = WireConfig::default();
        let version = req(Request::Query(Query::Version));
        let gc = req(Request::Command(Command::GcDiff { vol: "v0".into() }));
        let bad_vol = req(Request::Command(Command::GcDiff {
            vol: "../etc".into(),
        }));
        let sub_many = req(Request::Subscribe(Subscribe {
            vols: vec![String::new(); w.limits.list_max + 1],
        }));
        let huge_bulk = req(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: "v".into(),
            size_lb: 1 << 20,
            time_s: 0,
            bulk_lb: 1 << 40,
        })));
        let mut trailing = version.clone();
        trailing.push(0);
        let mut oversized = gc.clone();
        oversized.resize(w.msg_len_max as usize + 1, 0);
        let reply = enc(&Message::Reply(Reply::Done));
        let step = enc(&Message::Step(Step::Ack));
        use ErrorCode as C;
        use Role as R;
        // (payload, peer, own, Ok or the code and a piece of the message)
        type Want = Result<(), (ErrorCode, &'static str)>;
        let cases: Vec<(&[u8], R, R, Want)> = vec![
            (&version, R::Viewer, R::Archive, Ok(())),
            (&gc, R::Operator, R::Archive, Ok(())),
            (
                &gc,
                R::Viewer,
                R::Archive,
                Err((C::Forbidden, "viewer may not send control commands")),
            ),
            (
                &gc,
                R::Proxy,
                R::Storage,
                Err((C::Forbidden, "proxy may not send control commands")),
            ),
            (
                &bad_vol,
                R::Operator,
                R::Proxy,
                Err((C::BadRequest, "volume name")),
            ),
            // Authorized before decoding: a storage is refused a subscription whatever
            // its size; a viewer's oversized list is decoded, then refused by admission.
            (
                &sub_many,
                R::Storage,
                R::Archive,
                Err((C::Forbidden, "storage may not subscribe")),
            ),
            (
                &sub_many,
                R::Viewer,
                R::Archive,
                Err((C::TooLarge, "entries")),
            ),
            (
                &huge_bulk,
                R::Storage,
                R::Archive,
                Err((C::BadRequest, "a bulk of")),
            ),
            (
                &huge_bulk,
                R::Storage,
                R::Proxy,
                Err((C::Forbidden, "storage may not run full/hash sync")),
            ),
            (
                &trailing,
                R::Viewer,
                R::Archive,
                Err((C::BadRequest, "1 bytes after")),
            ),
            (
                &oversized,
                R::Operator,
                R::Archive,
                Err((C::TooLarge, "at most 65536")),
            ),
            (
                &reply,
                R::Operator,
                R::Archive,
                Err((C::BadRequest, "got a reply")),
            ),
            (
                &step,
                R::Archive,
                R::Archive,
                Err((C::BadRequest, "got a step")),
            ),
            (
                &[],
                R::Operator,
                R::Archive,
                Err((C::BadRequest, "cannot decode")),
            ),
            (
                &[0xff; 8],
                R::Operator,
                R::Archive,
                Err((C::BadRequest, "cannot decode")),
            ),
            (
                &[0, 7, 1, 2],
                R::Operator,
                R::Archive,
                Err((C::BadRequest, "unknown request kind 7")),
            ),
            // The body after an allowed class is garbage.
            (
                &[0, 1, 0xff, 0xff],
                R::Viewer,
                R::Archive,
                Err((C::BadRequest, "cannot decode")),
            ),
        ];
        for (i, (payload, peer, own, want)) in cases.into_iter().enumerate() {
            let got = code(request(payload, peer, own, &w));
            match (got, want) {
                (Ok(_), Ok(())) => {}
                (Err((c, m)), Err((wc, wm))) => {
                    assert_eq!(c, wc, "case {i}: {m}");
                    assert!(m.contains(wm), "case {i}: {m:?} lacks {wm:?}");
                }
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_non_canonical_varint_reads_the_same_in_peek_and_decode() {
        // 0x80 0x00 is a (non-canonical) zero for postcard: both must see a Command.
        let mut bytes = vec![0x80, 0x00];
        bytes.extend_from_slice(&req(Request::Command(Command::GcDiff { vol: "v".into() }))[1..]);
        assert_eq!(peek_class(&bytes).unwrap(), OpClass::Command);
        let e = request(&bytes, Role::Viewer, Role::Archive, &WireConfig::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let r = request(
            &bytes,
            Role::Operator,
            Role::Archive,
            &WireConfig::default(),
        )
        .unwrap();
        assert_eq!(r, Request::Command(Command::GcDiff { vol: "v".into() }));
    }

    fn any_request() -> impl Strategy<Value = Request> {
        any::<Request>()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The peek agrees with the decoder on every request (a variant added to or moved
        /// in `Request` fails here).
        #[test]
        fn peek_matches_op_class(r in any_request()) {
            let bytes = req(r.clone());
            prop_assert_eq!(peek_class(&bytes).unwrap(), r.op_class());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for peer in Role::ALL {
                for own in Role::ALL {
                    let _ = request(&bytes, peer, own, &WireConfig::default());
                }
            }
        }
    }
}
