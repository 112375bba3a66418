//! The `tweets` topic's wire format (SPEC §2.2): course-compatible JSON, cascade id as key.
//!
//! Decoding never panics: every way a message can be wrong maps to one [`RejectReason`], so
//! that bad input is counted and dead-lettered with its reason and never touches the state
//! of other cascades.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::records::{CascadeId, EventKind, RejectReason, TweetEvent};
use crate::Time;

/// Largest event time accepted (seconds): about 31,700 years; beyond that a time is junk.
pub const MAX_TIME: f64 = 1e12;
/// Largest magnitude accepted: more followers than people.
pub const MAX_MAGNITUDE: f64 = 1e11;

/// A message of the `tweets` topic as the course sends it. The strings borrow from the
/// message when they hold no escape (the usual case): decoding a message then allocates
/// nothing but an original tweet's text instead of three `String`s per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTweet<'a> {
    /// `tweet` or `retweet`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The tweet's text.
    #[serde(default, borrow)]
    pub msg: Cow<'a, str>,
    /// Event time in seconds on the source's clock.
    pub t: f64,
    /// Follower count of the (re)tweeting user.
    pub m: f64,
    /// The producing source's id.
    #[serde(default)]
    pub source: u64,
    /// Free-form info; the course writes `cascade=<id>`.
    #[serde(default, borrow)]
    pub info: Cow<'a, str>,
}

/// A decoding failure: the reason and a human-readable detail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct DecodeError {
    /// The bounded reason (metric label, dead-letter reason).
    pub reason: RejectReason,
    /// What exactly was wrong (for the dead-letter record and logs).
    pub detail: String,
}

fn fail(reason: RejectReason, detail: impl Into<String>) -> DecodeError {
    DecodeError { reason, detail: detail.into() }
}

/// Encodes an event for the `tweets` topic: (key, JSON value).
pub fn encode(event: &TweetEvent, source: u64) -> (String, String) {
    let wire = WireTweet {
        kind: Cow::Borrowed(match event.kind {
            EventKind::Tweet => "tweet",
            EventKind::Retweet => "retweet",
        }),
        msg: Cow::Borrowed(&event.msg),
        t: event.time as f64,
        m: event.magnitude,
        source,
        info: Cow::Owned(format!("cascade={}", event.cascade)),
    };
    (event.cascade.to_string(), serde_json::to_string(&wire).expect("plain struct serialises"))
}

/// Decodes one message. `seq` orders events of the same second (the Kafka offset).
pub fn decode(key: Option<&[u8]>, payload: Option<&[u8]>, seq: u64, max_bytes: usize) -> Result<TweetEvent, DecodeError> {
    let payload = payload.ok_or_else(|| fail(RejectReason::InvalidJson, "empty payload"))?;
    if payload.len() > max_bytes {
        return Err(fail(RejectReason::Oversized, format!("{} bytes > limit {max_bytes}", payload.len())));
    }
    let wire = match flat::decode(payload) {
        Some(wire) => wire,
        None => decode_any(payload)?,
    };
    let kind = match &*wire.kind {
        "tweet" => EventKind::Tweet,
        "retweet" => EventKind::Retweet,
        other => return Err(fail(RejectReason::UnknownType, format!("type {:?}", truncate(other, 40)))),
    };
    if !(wire.t.is_finite() && (0.0..=MAX_TIME).contains(&wire.t)) {
        return Err(fail(RejectReason::InvalidValue, format!("time {} out of [0, {MAX_TIME}]", wire.t)));
    }
    if !(wire.m.is_finite() && (0.0..=MAX_MAGNITUDE).contains(&wire.m)) {
        return Err(fail(RejectReason::InvalidValue, format!("magnitude {} out of [0, {MAX_MAGNITUDE}]", wire.m)));
    }
    let cascade = cascade_id(key, &wire.info)?;
    Ok(TweetEvent {
        cascade,
        time: wire.t.round() as Time,
        seq,
        magnitude: wire.m,
        kind,
        msg: if kind == EventKind::Tweet { wire.msg.into_owned() } else { String::new() },
    })
}

/// Decodes any JSON with serde, classifying what is wrong with it: the general path
/// behind [`flat::decode`].
fn decode_any(payload: &[u8]) -> Result<WireTweet<'_>, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| {
        use serde_json::error::Category;
        let message = e.to_string();
        let reason = match e.classify() {
            Category::Data if message.starts_with("missing field") => RejectReason::MissingField,
            // A field given twice is ambiguous JSON, not a field of the wrong type.
            Category::Data if message.starts_with("duplicate field") => RejectReason::InvalidJson,
            Category::Data => RejectReason::WrongType,
            _ => RejectReason::InvalidJson,
        };
        fail(reason, message)
    })
}

/// Judges a decoded event's time against its partition's newest event time (the Kafka
/// source's rule, kept here so that it is unit-tested): more than `lateness` seconds behind
/// is [`RejectReason::Late`]; more than `max_ahead` seconds ahead is
/// [`RejectReason::InvalidValue`] (a junk time must not make the partition's later events
/// late). Returns the partition's new newest time.
pub fn judge_time(time: Time, newest: Option<Time>, lateness: u64, max_ahead: u64) -> Result<Time, DecodeError> {
    let Some(newest) = newest else { return Ok(time) };
    if time.saturating_add(lateness) < newest {
        return Err(fail(RejectReason::Late, format!("time {time} is more than {lateness} s behind {newest}")));
    }
    if time > newest.saturating_add(max_ahead) {
        return Err(fail(
            RejectReason::InvalidValue,
            format!("time {time} is more than {max_ahead} s ahead of its partition's newest event {newest}"),
        ));
    }
    Ok(time.max(newest))
}

/// The cascade id: the key, else `cascade=<id>` in `info` (course messages carry both).
fn cascade_id(key: Option<&[u8]>, info: &str) -> Result<CascadeId, DecodeError> {
    let from_key = key.and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| k.trim().parse::<CascadeId>().ok());
    let from_info = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|part| part.strip_prefix("cascade=").and_then(|id| id.parse::<CascadeId>().ok()));
    from_key.or(from_info).ok_or_else(|| {
        let shown = key.map(|k| truncate(&String::from_utf8_lossy(k), 40).to_owned()).unwrap_or_else(|| "none".into());
        fail(RejectReason::BadKey, format!("key {shown:?} is not a numeric cascade id"))
    })
}

/// At most `n` characters of `s`, on a character boundary.
pub fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The fast path of the decoder: the messages the course and `generate` send, a flat JSON
/// object of strings without escapes and plain numbers, each key once. Anything else
/// (escapes, nesting, `null`, a duplicate or missing field, a negative or out-of-range
/// number, trailing bytes…) returns `None` and goes to serde, which decodes it or says what
/// is wrong: so this path only ever decodes what serde would decode, to the same values
/// (checked by a property test below).
///
/// Why: this reads the message once, where serde's derived visitor matches every key through
/// its generic identifier visitor and validates strings twice. Measured (BENCHMARKS.md, issue
/// 18): in `perf` profiles of a NEWS backtest with the forest off, decoding went from 10.0 %
/// of the samples (serde alone) to 8.5 % (this path first): a small gain.
mod flat {
    use std::borrow::Cow;

    use super::WireTweet;

    /// A cursor over the message.
    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn peek(&mut self) -> Option<u8> {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
                self.at += 1;
            }
            self.bytes.get(self.at).copied()
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        /// A string without escapes or control characters, valid UTF-8.
        fn string(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let rest = &self.bytes[self.at..];
            let len = rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            if rest[len] != b'"' {
                return None;
            }
            self.at += len + 1;
            std::str::from_utf8(&rest[..len]).ok()
        }

        /// A non-negative JSON number (the grammar exactly): its text, and whether it is an
        /// integer (serde reads those as `u64`, the others as `f64`).
        fn number(&mut self) -> Option<(&'a str, bool)> {
            self.peek()?;
            let start = self.at;
            let digits = |c: &mut Self| {
                let n = c.bytes[c.at..].iter().take_while(|b| b.is_ascii_digit()).count();
                c.at += n;
                n
            };
            match self.bytes.get(self.at)? {
                b'0' => self.at += 1,
                b'1'..=b'9' => {
                    digits(self);
                }
                _ => return None,
            }
            let mut integer = true;
            if self.bytes.get(self.at) == Some(&b'.') {
                self.at += 1;
                integer = false;
                (digits(self) > 0).then_some(())?;
            }
            if let Some(b'e' | b'E') = self.bytes.get(self.at) {
                self.at += 1;
                integer = false;
                if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                    self.at += 1;
                }
                (digits(self) > 0).then_some(())?;
            }
            std::str::from_utf8(&self.bytes[start..self.at]).ok().map(|s| (s, integer))
        }

        /// A number read as serde reads it into an `f64` (an integer as `u64`, then cast).
        fn float(&mut self) -> Option<f64> {
            let (text, integer) = self.number()?;
            let value = if integer { text.parse::<u64>().ok()? as f64 } else { text.parse::<f64>().ok()? };
            value.is_finite().then_some(value)
        }
    }

    /// Sets a field given once; a second time, the message is not flat.
    fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
        match slot {
            Some(_) => None,
            None => {
                *slot = Some(value?);
                Some(())
            }
        }
    }

    /// The message, when it is a flat object that serde decodes to the same value.
    pub(super) fn decode(payload: &[u8]) -> Option<WireTweet<'_>> {
        let mut c = Cursor { bytes: payload, at: 0 };
        let (mut kind, mut msg, mut t, mut m, mut source, mut info) = (None, None, None, None, None, None);
        c.eat(b'{')?;
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            match key {
                "type" => once(&mut kind, c.string())?,
                "msg" => once(&mut msg, c.string())?,
                "t" => once(&mut t, c.float())?,
                "m" => once(&mut m, c.float())?,
                "source" => {
                    once(&mut source, c.number().filter(|(_, integer)| *integer).and_then(|(s, _)| s.parse::<u64>().ok()))?
                }
                "info" => once(&mut info, c.string())?,
                // serde skips unknown fields; a plain one is skipped here too.
                _ if c.peek()? == b'"' => c.string().map(drop)?,
                _ => c.number().map(drop)?,
            }
            match c.peek()? {
                b',' => c.at += 1,
                b'}' => break,
                _ => return None,
            }
        }
        c.at += 1;
        if c.peek().is_some() {
            return None;
        }
        Some(WireTweet {
            kind: Cow::Borrowed(kind?),
            msg: Cow::Borrowed(msg.unwrap_or_default()),
            t: t?,
            m: m?,
            source: source.unwrap_or_default(),
            info: Cow::Borrowed(info.unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of messages: valid fields, odd numbers and strings, broken syntax.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""type":"tweet""#.to_owned()),
            Just(r#""type":"retweet""#.to_owned()),
            Just(r#""type":"like""#.to_owned()),
            Just(r#""type":"tw\u0065et""#.to_owned()),
            Just(r#""msg":"…""#.to_owned()),
            Just(r#""msg":"a\"b""#.to_owned()),
            Just(r#""info":"cascade=12""#.to_owned()),
            Just(r#""source":3"#.to_owned()),
            Just(r#""source":-1"#.to_owned()),
            Just(r#""source":1.5"#.to_owned()),
            Just(r#""extra":[1]"#.to_owned()),
            Just(r#""extra":"x""#.to_owned()),
            Just(r#""extra":null"#.to_owned()),
            Just(r#""t":null"#.to_owned()),
            Just(r#""t":"5""#.to_owned()),
            (prop_oneof![Just("t"), Just("m"), Just("other")], number()).prop_map(|(k, n)| format!(r#""{k}":{n}"#)),
            Just(" ".to_owned()),
            Just(",".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
        ]
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..u64::MAX).prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            Just("18446744073709551616".to_owned()),
            Just("1e999".to_owned()),
            Just("-0".to_owned()),
            Just("01".to_owned()),
            Just("1.".to_owned()),
            Just(".5".to_owned()),
            Just("1E+2".to_owned()),
            Just("2.5e-3".to_owned()),
        ]
    }

    proptest! {
        /// The fast path decodes only what serde decodes, to the same value.
        #[test]
        fn the_fast_path_agrees_with_serde(pieces in proptest::collection::vec(piece(), 0..9), comma in any::<bool>()) {
            let body = if comma { pieces.join(",") } else { pieces.concat() };
            let text = format!("{{{body}}}");
            if let Some(fast) = flat::decode(text.as_bytes()) {
                let slow: WireTweet = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{text}: serde says {e}")))?;
                prop_assert_eq!(fast, slow, "{}", text);
            }
        }
    }

    #[test]
    fn the_fast_path_takes_the_messages_generate_sends() {
        let e = TweetEvent { cascade: 12, time: 1685, seq: 0, magnitude: 1120.5, kind: EventKind::Retweet, msg: String::new() };
        let (_, value) = encode(&e, 3);
        let fast = flat::decode(value.as_bytes()).expect("flat");
        assert_eq!(fast, serde_json::from_str::<WireTweet>(&value).unwrap());
        let course = r#"{"type": "retweet", "msg": "…", "t": 1702, "m": 87, "source": 0, "info": "cascade=1234"}"#;
        assert!(flat::decode(course.as_bytes()).is_some(), "the course's spacing");
    }

    fn decode_str(key: &str, payload: &str) -> Result<TweetEvent, DecodeError> {
        decode(Some(key.as_bytes()), Some(payload.as_bytes()), 7, 65_536)
    }

    #[test]
    fn course_messages_round_trip() {
        let e = TweetEvent { cascade: 1234, time: 1685, seq: 7, magnitude: 1120.0, kind: EventKind::Tweet, msg: "hi".into() };
        let (key, value) = encode(&e, 0);
        assert_eq!(key, "1234");
        assert_eq!(decode_str(&key, &value).unwrap(), e);
        let course = r#"{"type": "retweet", "msg": "…", "t": 1702, "m": 87, "source": 0, "info": "cascade=1234"}"#;
        let r = decode_str("1234", course).unwrap();
        assert_eq!((r.kind, r.time, r.magnitude, r.msg.as_str()), (EventKind::Retweet, 1702, 87.0, ""));
    }

    #[test]
    fn every_kind_of_bad_message_has_its_reason() {
        let cases = [
            ("1", "{not json", RejectReason::InvalidJson),
            ("1", r#"{"type":"tweet","t":1}"#, RejectReason::MissingField),
            ("1", r#"{"type":"tweet","t":"x","m":1}"#, RejectReason::WrongType),
            ("1", r#"{"type":"tweet","t":-5,"m":1}"#, RejectReason::InvalidValue),
            ("1", r#"{"type":"tweet","t":5,"m":-1}"#, RejectReason::InvalidValue),
            ("1", r#"{"type":"tweet","t":1e300,"m":1}"#, RejectReason::InvalidValue),
            ("1", r#"{"type":"tweet","t":1e999,"m":1}"#, RejectReason::InvalidJson),
            ("1", r#"{"type":"like","t":5,"m":1}"#, RejectReason::UnknownType),
            ("abc", r#"{"type":"tweet","t":5,"m":1}"#, RejectReason::BadKey),
            ("1", "[1,2,3]", RejectReason::WrongType),
        ];
        for (key, payload, reason) in cases {
            assert_eq!(decode_str(key, payload).unwrap_err().reason, reason, "{payload}");
        }
        assert_eq!(decode(Some(b"1"), Some(&[0xff, 0xfe]), 0, 100).unwrap_err().reason, RejectReason::InvalidJson);
        assert_eq!(decode(Some(b"1"), Some(&[b' '; 200]), 0, 100).unwrap_err().reason, RejectReason::Oversized);
        assert_eq!(decode(Some(b"1"), None, 0, 100).unwrap_err().reason, RejectReason::InvalidJson);
    }

    /// Found by the hostile corpus (`duplicate-field` in tests/data/hostile/kafka): a field
    /// given twice was classified `wrong_type`.
    #[test]
    fn a_duplicate_field_is_invalid_json_not_a_wrong_type() {
        let e = decode_str("1", r#"{"type":"tweet","t":5,"t":6,"m":1}"#).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidJson, "{e}");
    }

    /// The hostile corpus's payloads that are not plain text: every one has its reason and
    /// none panics (deep nesting hits serde_json's recursion limit, not the stack).
    #[test]
    fn hostile_payloads_have_their_reasons() {
        // serde also reads a struct from a positional array: `[[[…` fails on its first field.
        let (deep_arrays, deep_objects) = ("[".repeat(30_000), r#"{"x":"#.repeat(12_000));
        let cases: [(&[u8], RejectReason); 10] = [
            (b"", RejectReason::InvalidJson),
            (deep_arrays.as_bytes(), RejectReason::WrongType),
            (deep_objects.as_bytes(), RejectReason::InvalidJson),
            (br#"{"type":"tweet","t":NaN,"m":1}"#, RejectReason::InvalidJson),
            (br#"{"type":"tweet","t":5,"m":Infinity}"#, RejectReason::InvalidJson),
            (b"{\"type\":\"tweet\",\"msg\":\"\xff\",\"t\":5,\"m\":1}", RejectReason::InvalidJson),
            (br#"{"type":"tweet","msg":"\ud800","t":5,"m":1}"#, RejectReason::InvalidJson),
            (br#"{"type":"tweet","t":5,"m":1} trailing"#, RejectReason::InvalidJson),
            (br#"null"#, RejectReason::WrongType),
            (br#"{"type":"tweet","t":5,"m":1e11,"source":-1}"#, RejectReason::WrongType),
        ];
        for (payload, reason) in cases {
            let got = decode(Some(b"1"), Some(payload), 0, 65_536).map_err(|e| e.reason);
            assert_eq!(got, Err(reason), "{}", String::from_utf8_lossy(&payload[..payload.len().min(60)]));
        }
        for key in [&b"\xff\xfe"[..], b"", b"-5", b"99999999999999999999999", b"1.5"] {
            let got = decode(Some(key), Some(br#"{"type":"tweet","t":5,"m":1}"#), 0, 100).map_err(|e| e.reason);
            assert_eq!(got, Err(RejectReason::BadKey), "key {key:?}");
        }
    }

    /// Found by the hostile corpus: a time under [`MAX_TIME`] but far ahead of its partition
    /// (10^11 s) was accepted and made every later event of that partition late.
    #[test]
    fn a_time_far_ahead_of_its_partition_is_rejected_and_does_not_move_it() {
        assert_eq!(judge_time(99_999_999_999, Some(1_000), 0, 86_400).unwrap_err().reason, RejectReason::InvalidValue);
        assert_eq!(judge_time(1_000 + 86_400, Some(1_000), 0, 86_400), Ok(87_400));
        assert_eq!(judge_time(999, Some(1_000), 0, 86_400).unwrap_err().reason, RejectReason::Late);
        assert_eq!(judge_time(999, Some(1_000), 1, 86_400), Ok(1_000));
        assert_eq!(judge_time(u64::MAX, Some(u64::MAX - 1), u64::MAX, u64::MAX), Ok(u64::MAX), "no overflow");
        assert_eq!(judge_time(7, None, 0, 0), Ok(7), "the first event has no reference");
    }

    #[test]
    fn the_info_field_can_stand_in_for_a_missing_key() {
        let e = decode(None, Some(br#"{"type":"tweet","t":5,"m":1,"info":"cascade=42"}"#), 0, 1000).unwrap();
        assert_eq!(e.cascade, 42);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
