//! Request and response codes, with Apache RocketMQ's numbers.
//!
//! Keeping RocketMQ's numbers means logs, captures and a future codec for RocketMQ's own wire
//! format can share one table. A frame carries its code as a raw `i32` so that an unknown
//! code still decodes at frame level; [`RequestCode::from_i32`] and
//! [`ResponseCode::from_i32`] turn it into the enum.

/// Defines a `#[repr(i32)]` code enum with `from_i32`, `as_i32` and `name` from one table,
/// so a number and its name can never drift apart.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal => $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(i32)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant = $num, )+
        }

        impl $ty {
            /// Every code, in table order (for tests and diagnostics).
            pub const ALL: &'static [$ty] = &[ $( $ty::$variant, )+ ];

            /// The code for a wire number, or `None` when this build does not know it.
            pub fn from_i32(code: i32) -> Option<Self> {
                match code {
                    $( $num => Some($ty::$variant), )+
                    _ => None,
                }
            }

            /// The wire number of this code.
            pub fn as_i32(self) -> i32 {
                self as i32
            }

            /// RocketMQ's name for this code (`SEND_MESSAGE`), for logs.
            pub fn name(self) -> &'static str {
                match self {
                    $( $ty::$variant => $name, )+
                }
            }
        }

        impl From<$ty> for i32 {
            fn from(code: $ty) -> i32 {
                code.as_i32()
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", self.name(), self.as_i32())
            }
        }
    };
}

code_enum! {
    /// What a request asks for. Carried in [`crate::protocol::Frame::code`] of request and
    /// one-way frames; numbers are RocketMQ's `RequestCode`.
    pub enum RequestCode {
        /// Producer → broker: store one message (body = message body).
        SendMessage = 10 => "SEND_MESSAGE",
        /// Consumer → broker: read messages from one queue, possibly long-polling.
        PullMessage = 11 => "PULL_MESSAGE",
        /// Admin/client → broker: find messages by key in the index.
        QueryMessage = 12 => "QUERY_MESSAGE",
        /// Consumer → broker: read a group's committed offset for a queue.
        QueryConsumerOffset = 14 => "QUERY_CONSUMER_OFFSET",
        /// Consumer → broker: commit a group's offset for a queue (usually one-way).
        UpdateConsumerOffset = 15 => "UPDATE_CONSUMER_OFFSET",
        /// Admin → broker: create or update a topic's configuration.
        UpdateAndCreateTopic = 17 => "UPDATE_AND_CREATE_TOPIC",
        /// Admin → broker: every topic configuration the broker holds.
        GetAllTopicConfig = 21 => "GET_ALL_TOPIC_CONFIG",
        /// Slave → master: every consumer group's committed offsets (the slave keeps a
        /// copy, so consumers that fail over to it resume where they were).
        GetAllConsumerOffset = 43 => "GET_ALL_CONSUMER_OFFSET",
        /// Admin → broker: the broker's runtime state as a key/value table.
        GetBrokerRuntimeInfo = 28 => "GET_BROKER_RUNTIME_INFO",
        /// Consumer → broker: first queue offset stored at or after a timestamp.
        SearchOffsetByTimestamp = 29 => "SEARCH_OFFSET_BY_TIMESTAMP",
        /// Consumer → broker: the next offset to be written in a queue.
        GetMaxOffset = 30 => "GET_MAX_OFFSET",
        /// Consumer → broker: the oldest offset still stored in a queue.
        GetMinOffset = 31 => "GET_MIN_OFFSET",
        /// Consumer → broker: store time of the oldest message in a queue.
        GetEarliestMsgStoretime = 32 => "GET_EARLIEST_MSG_STORETIME",
        /// Admin/client → broker: one stored message by commit-log offset.
        ViewMessageById = 33 => "VIEW_MESSAGE_BY_ID",
        /// Client → broker: "I am alive, these are my groups and subscriptions".
        HeartBeat = 34 => "HEART_BEAT",
        /// Client → broker: the client is leaving its groups.
        UnregisterClient = 35 => "UNREGISTER_CLIENT",
        /// Consumer → broker: consumption failed, schedule a retry (or dead-letter it).
        ConsumerSendMsgBack = 36 => "CONSUMER_SEND_MSG_BACK",
        /// Producer → broker: commit or roll back a transactional half message (one-way).
        EndTransaction = 37 => "END_TRANSACTION",
        /// Consumer → broker: ids of every consumer in a group (for rebalancing).
        GetConsumerListByGroup = 38 => "GET_CONSUMER_LIST_BY_GROUP",
        /// Broker → producer: ask for the outcome of a pending transaction (one-way).
        CheckTransactionState = 39 => "CHECK_TRANSACTION_STATE",
        /// Broker → consumer: the group's membership changed, rebalance now (one-way).
        NotifyConsumerIdsChanged = 40 => "NOTIFY_CONSUMER_IDS_CHANGED",
        /// Orderly consumer → broker: lock queues for exclusive consumption.
        LockBatchMq = 41 => "LOCK_BATCH_MQ",
        /// Orderly consumer → broker: release queue locks.
        UnlockBatchMq = 42 => "UNLOCK_BATCH_MQ",
        /// Broker → name server: register (or refresh) the broker and its topics.
        RegisterBroker = 103 => "REGISTER_BROKER",
        /// Broker → name server: the broker is shutting down.
        UnregisterBroker = 104 => "UNREGISTER_BROKER",
        /// Client → name server: which brokers and queues serve a topic.
        GetRouteInfoByTopic = 105 => "GET_ROUTEINFO_BY_TOPIC",
        /// Client/admin → name server: every broker and cluster known.
        GetBrokerClusterInfo = 106 => "GET_BROKER_CLUSTER_INFO",
        /// Admin → broker: per-queue min/max offsets of a topic.
        GetTopicStatsInfo = 202 => "GET_TOPIC_STATS_INFO",
        /// Admin → name server: every topic known.
        GetAllTopicListFromNameserver = 206 => "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
        /// Admin → broker: a consumer group's progress per queue.
        GetConsumeStats = 208 => "GET_CONSUME_STATS",
        /// Admin → broker: delete a topic's configuration.
        DeleteTopicInBroker = 215 => "DELETE_TOPIC_IN_BROKER",
        /// Admin → name server: forget a topic's routes.
        DeleteTopicInNamesrv = 216 => "DELETE_TOPIC_IN_NAMESRV",
        /// Broker → consumer (one-way): the group's offsets of a topic were reset; body =
        /// the new offset of each queue.
        ResetConsumerClientOffset = 220 => "RESET_CONSUMER_CLIENT_OFFSET",
        /// Admin → broker: reset a group's offsets of a topic to a time, and tell its
        /// consumers.
        InvokeBrokerToResetOffset = 222 => "INVOKE_BROKER_TO_RESET_OFFSET",
        /// Producer → broker: store several messages in one request (body = batch).
        SendBatchMessage = 320 => "SEND_BATCH_MESSAGE",
        /// Client → name server (an actimq addition, no RocketMQ equivalent): answered once
        /// the routes changed since the version the client knows, or after its hold, so
        /// clients learn of a broker that came or went within moments, not at their next
        /// 30 s poll.
        WatchRoutes = 30001 => "WATCH_ROUTES",
    }
}

code_enum! {
    /// The outcome of a request. Carried in [`crate::protocol::Frame::code`] of response
    /// frames; numbers are RocketMQ's `ResponseCode`/`RemotingSysResponseCode`.
    pub enum ResponseCode {
        /// The request succeeded.
        Success = 0 => "SUCCESS",
        /// The server failed in a way the client cannot fix; the remark says why.
        SystemError = 1 => "SYSTEM_ERROR",
        /// The server is overloaded (a full mailbox); retry later or elsewhere.
        SystemBusy = 2 => "SYSTEM_BUSY",
        /// The request code is unknown to the server.
        RequestCodeNotSupported = 3 => "REQUEST_CODE_NOT_SUPPORTED",
        /// A transaction operation failed.
        TransactionFailed = 4 => "TRANSACTION_FAILED",
        /// Stored, but the synchronous flush did not finish in time.
        FlushDiskTimeout = 10 => "FLUSH_DISK_TIMEOUT",
        /// Stored on the master, but no slave is available for synchronous replication.
        SlaveNotAvailable = 11 => "SLAVE_NOT_AVAILABLE",
        /// Stored on the master, but the slave did not confirm in time.
        FlushSlaveTimeout = 12 => "FLUSH_SLAVE_TIMEOUT",
        /// The message is invalid (too large, bad topic name, bad properties).
        MessageIllegal = 13 => "MESSAGE_ILLEGAL",
        /// The service is not available (shutting down, slave asked to write, store poisoned).
        ServiceNotAvailable = 14 => "SERVICE_NOT_AVAILABLE",
        /// The peer's protocol version is not supported.
        VersionNotSupported = 15 => "VERSION_NOT_SUPPORTED",
        /// The topic or broker does not allow this operation (read/write permission).
        NoPermission = 16 => "NO_PERMISSION",
        /// The topic does not exist.
        TopicNotExist = 17 => "TOPIC_NOT_EXIST",
        /// The topic already exists.
        TopicExistAlready = 18 => "TOPIC_EXIST_ALREADY",
        /// Pull: no new message (the consumer is caught up).
        PullNotFound = 19 => "PULL_NOT_FOUND",
        /// Pull: messages were scanned but none matched the filter; pull again at once.
        PullRetryImmediately = 20 => "PULL_RETRY_IMMEDIATELY",
        /// Pull: the requested offset is out of range; use the header's next_begin_offset.
        PullOffsetMoved = 21 => "PULL_OFFSET_MOVED",
        /// Query: nothing found (no committed offset, no message for the key).
        QueryNotFound = 22 => "QUERY_NOT_FOUND",
        /// The subscription expression does not parse.
        SubscriptionParseFailed = 23 => "SUBSCRIPTION_PARSE_FAILED",
        /// The group has no subscription for this topic on this broker (heartbeat first).
        SubscriptionNotExist = 24 => "SUBSCRIPTION_NOT_EXIST",
        /// The request's subscription is older than the one the broker holds.
        SubscriptionNotLatest = 25 => "SUBSCRIPTION_NOT_LATEST",
        /// The consumer group is not known to the broker.
        SubscriptionGroupNotExist = 26 => "SUBSCRIPTION_GROUP_NOT_EXIST",
        /// A header or body field is missing or out of range.
        InvalidParameter = 29 => "INVALID_PARAMETER",
        /// Transaction check answer: commit the half message.
        TransactionShouldCommit = 200 => "TRANSACTION_SHOULD_COMMIT",
        /// Transaction check answer: roll back the half message.
        TransactionShouldRollback = 201 => "TRANSACTION_SHOULD_ROLLBACK",
        /// Transaction check answer: state still unknown, ask again later.
        TransactionStateUnknow = 202 => "TRANSACTION_STATE_UNKNOW",
        /// The consumer addressed is not connected.
        ConsumerNotOnline = 206 => "CONSUMER_NOT_ONLINE",
        /// Consuming a message directly timed out.
        ConsumeMsgTimeout = 207 => "CONSUME_MSG_TIMEOUT",
        /// Pop consumption: no message.
        NoMessage = 208 => "NO_MESSAGE",
        /// The broker throttled the request.
        FlowControl = 215 => "FLOW_CONTROL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in RequestCode::ALL {
            assert!(seen.insert(code.as_i32()), "duplicate {code}");
            assert_eq!(RequestCode::from_i32(code.as_i32()), Some(code));
        }
        assert_eq!(RequestCode::from_i32(9999), None);
        assert_eq!(RequestCode::SendMessage.as_i32(), 10);
        assert_eq!(RequestCode::SendBatchMessage.name(), "SEND_BATCH_MESSAGE");
    }

    #[test]
    fn response_codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ResponseCode::ALL {
            assert!(seen.insert(code.as_i32()), "duplicate {code}");
            assert_eq!(ResponseCode::from_i32(code.as_i32()), Some(code));
        }
        assert_eq!(ResponseCode::ConsumerNotOnline.as_i32(), 206);
        assert_eq!(
            ResponseCode::PullOffsetMoved.to_string(),
            "PULL_OFFSET_MOVED(21)"
        );
    }
}
