//! The naming rule for topics and consumer groups. Both become file and folder names on the
//! broker, so the broker checks them on arrival and the client before it sends.

/// Checks a topic or group name the way RocketMQ does: 1..=127 bytes of letters, digits,
/// `%`, `|`, `_` and `-`. `what` names the thing in the error ("topic name", "consumer
/// group name").
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 127 {
        return Err(format!("{what} '{name}' must be 1..=127 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return Err(format!(
            "{what} '{name}' may only hold letters, digits, %, |, _ and -"
        ));
    }
    Ok(())
}

/// The topic delayed messages wait in, one queue per delay level (queue n - 1 for level n).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Prefix of a consumer group's retry topic.
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// The topic half (transactional) messages wait in.
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// The topic recording which half messages were committed or rolled back.
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where half messages checked back `transaction_check_max` times go.
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";

/// The retry topic of a consumer group (`%RETRY%<group>`).
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group (`%DLQ%<group>`).
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// Whether a topic is one the broker keeps for itself (delays, transactions), which
/// producers may not send to nor consumers read.
pub fn is_internal_topic(topic: &str) -> bool {
    matches!(
        topic,
        SCHEDULE_TOPIC | TRANS_HALF_TOPIC | TRANS_OP_HALF_TOPIC | TRANS_CHECK_MAX_TIME_TOPIC
    )
}

/// [`validate_name`] for a topic.
pub fn validate_topic_name(topic: &str) -> Result<(), String> {
    validate_name("topic name", topic)
}

/// [`validate_name`] for a consumer group.
pub fn validate_group_name(group: &str) -> Result<(), String> {
    validate_name("consumer group name", group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_topic_name("TopicTest_1-%|").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(128)).is_err());
        let e = validate_group_name("g/1").unwrap_err();
        assert!(e.starts_with("consumer group name"), "{e}");
    }
}
