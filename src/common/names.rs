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
