//! RocketMQ's message-properties format: `name\u{1}value\u{2}` pairs back to back. The
//! producer builds it, the store parses it to index tags and keys, consumers read it.
//! Pure string functions; nothing here allocates beyond what it returns.

/// Property separator between a name and its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Property separator after each value.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Property holding the message's single tag.
pub const PROPERTY_TAGS: &str = "TAGS";
/// Property holding space-separated business keys (indexed).
pub const PROPERTY_KEYS: &str = "KEYS";
/// Property holding the producer's unique message id (indexed).
pub const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
/// Property holding a message's delay level (1 = the broker's first `message_delay_level`).
pub const PROPERTY_DELAY: &str = "DELAY";
/// Property of a delayed or half message: the topic it is meant for.
pub const PROPERTY_REAL_TOPIC: &str = "REAL_TOPIC";
/// Property of a delayed or half message: the queue it is meant for.
pub const PROPERTY_REAL_QUEUE_ID: &str = "REAL_QID";
/// Property of a delivered delayed message: when it came due (ms since the epoch). RocketMQ
/// 5 names a timer message's due time so.
pub const PROPERTY_DUE_MS: &str = "TIMER_DELIVER_MS";
/// Property of a message living in `%RETRY%<group>`: the topic it was first sent to.
pub const PROPERTY_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Property of a retried or dead-lettered message: the offset id of the message consumed.
pub const PROPERTY_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Property of a retried message: the consumer's limit on reconsumes.
pub const PROPERTY_MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
/// Property of a transactional message: "true" while it is a half message.
pub const PROPERTY_TRANSACTION_PREPARED: &str = "TRAN_MSG";
/// Property of a transactional message: the producer group that can be asked about it.
pub const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";
/// Property of a half message: how many times the broker has checked it back.
pub const PROPERTY_TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// Property of a transactional message: its transaction id.
pub const PROPERTY_TRANSACTION_ID: &str = "__transactionId__";

/// Builds a RocketMQ properties string.
pub fn encode_properties<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in props {
        out.push_str(name);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(value);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Iterates the name/value pairs of a properties string, skipping malformed fragments as
/// RocketMQ's parser does.
pub fn parse_properties(props: &str) -> impl Iterator<Item = (&str, &str)> {
    // Scans bytes rather than `str::split`: this runs two or three times per stored
    // message, and a byte loop over these short strings costs a fraction of the char
    // searcher's set-up. Both separators are ASCII, so every cut is a char boundary.
    let position = |s: &str, sep: char| s.bytes().position(|b| b == sep as u8);
    let mut rest = props;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (pair, tail) = match position(rest, PROPERTY_SEPARATOR) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = tail;
            if let Some(i) = position(pair, NAME_VALUE_SEPARATOR) {
                return Some((&pair[..i], &pair[i + 1..]));
            }
        }
        None
    })
}

/// The value of one property.
pub fn property<'a>(props: &'a str, name: &str) -> Option<&'a str> {
    parse_properties(props)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Checks one property the way the producer and the broker both do: a non-empty name, and
/// neither name nor value holding `\u{1}` or `\u{2}`, which delimit properties on the
/// wire (a tag `A\u{2}B` would arrive as tag `A`).
pub fn check_property(name: &str, value: &str) -> Result<(), String> {
    let separator = |c| c == NAME_VALUE_SEPARATOR || c == PROPERTY_SEPARATOR;
    if name.is_empty() {
        return Err(format!("a property has an empty name (value {value:?})"));
    }
    if name.contains(separator) || value.contains(separator) {
        return Err(format!(
            "property {name:?} = {value:?} contains \\u{{1}} or \\u{{2}}, which delimit properties"
        ));
    }
    Ok(())
}

/// Checks a whole properties string as a broker receives it: every fragment is a
/// `name\u{1}value` pair with a non-empty name. A separator inside a name or value leaves a
/// fragment that is not one, which a parser would silently drop.
pub fn check_encoded(props: &str) -> Result<(), String> {
    for fragment in props.split(PROPERTY_SEPARATOR).filter(|f| !f.is_empty()) {
        match fragment.split_once(NAME_VALUE_SEPARATOR) {
            Some((name, value)) => check_property(name, value)?,
            None => {
                return Err(format!(
                    "properties hold a fragment {fragment:?} that is not name\\u{{1}}value: a name or value contained a separator"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separator_in_a_value_is_refused_on_both_sides() {
        assert!(check_property("TAGS", "TagA").is_ok());
        assert!(check_property("TAGS", "A\u{2}B").is_err());
        assert!(check_property("", "x").is_err());
        let good = encode_properties([("TAGS", "TagA"), ("KEYS", "k1 k2")]);
        assert!(check_encoded(&good).is_ok());
        assert!(check_encoded("").is_ok());
        // What a tag `A\u{2}B` encodes to: the broker sees the stray fragment `B`.
        let bad = encode_properties([("TAGS", "A\u{2}B")]);
        assert!(check_encoded(&bad).is_err());
    }
}
