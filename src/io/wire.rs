//! The `tweets` topic's wire format (SPEC §2.2): course-compatible JSON, cascade id as key.
//!
//! Decoding never panics: every way a message can be wrong maps to one [`RejectReason`], so
//! that bad input is counted and dead-lettered with its reason and never touches the state
//! of other cascades.

use serde::{Deserialize, Serialize};

use crate::records::{CascadeId, EventKind, RejectReason, TweetEvent};
use crate::Time;

/// Largest event time accepted (seconds): about 31,700 years; beyond that a time is junk.
pub const MAX_TIME: f64 = 1e12;
/// Largest magnitude accepted: more followers than people.
pub const MAX_MAGNITUDE: f64 = 1e11;

/// A message of the `tweets` topic as the course sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTweet {
    /// `tweet` or `retweet`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tweet's text.
    #[serde(default)]
    pub msg: String,
    /// Event time in seconds on the source's clock.
    pub t: f64,
    /// Follower count of the (re)tweeting user.
    pub m: f64,
    /// The producing source's id.
    #[serde(default)]
    pub source: u64,
    /// Free-form info; the course writes `cascade=<id>`.
    #[serde(default)]
    pub info: String,
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
        kind: match event.kind {
            EventKind::Tweet => "tweet".into(),
            EventKind::Retweet => "retweet".into(),
        },
        msg: event.msg.clone(),
        t: event.time as f64,
        m: event.magnitude,
        source,
        info: format!("cascade={}", event.cascade),
    };
    (event.cascade.to_string(), serde_json::to_string(&wire).expect("plain struct serialises"))
}

/// Decodes one message. `seq` orders events of the same second (the Kafka offset).
pub fn decode(key: Option<&[u8]>, payload: Option<&[u8]>, seq: u64, max_bytes: usize) -> Result<TweetEvent, DecodeError> {
    let payload = payload.ok_or_else(|| fail(RejectReason::InvalidJson, "empty payload"))?;
    if payload.len() > max_bytes {
        return Err(fail(RejectReason::Oversized, format!("{} bytes > limit {max_bytes}", payload.len())));
    }
    let wire: WireTweet = serde_json::from_slice(payload).map_err(|e| {
        use serde_json::error::Category;
        let message = e.to_string();
        let reason = match e.classify() {
            Category::Data if message.starts_with("missing field") => RejectReason::MissingField,
            // A field given twice is ambiguous JSON, not a field of the wrong type.
            Category::Data if message.starts_with("duplicate field") => RejectReason::InvalidJson,
            Category::Data => RejectReason::WrongType,
            _ => RejectReason::InvalidJson,
        };
        fail(reason, e.to_string())
    })?;
    let kind = match wire.kind.as_str() {
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
        msg: if kind == EventKind::Tweet { wire.msg } else { String::new() },
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
    let from_info = info.split(|c: char| c == ',' || c.is_whitespace()).find_map(|part| {
        part.strip_prefix("cascade=").and_then(|id| id.parse::<CascadeId>().ok())
    });
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

#[cfg(test)]
mod tests {
    use super::*;

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
