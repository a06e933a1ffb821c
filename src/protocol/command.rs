//! The typed request set: one [`Request`] variant per supported [`RequestCode`], and the
//! two conversions a connection needs, [`decode_request`] (frame → request) and
//! [`Request::to_frame`] (request → frame).
//!
//! Actors match on [`Request`] and never look at raw codes, headers or MessagePack. The
//! headers and bodies themselves live in [`message`](super::message),
//! [`group`](super::group), [`topic`](super::topic) and [`route`](super::route).
//! Responses are not wrapped in an enum: the requester knows what it asked for and calls
//! [`Frame::decode_header`]/[`Frame::decode_body`] with the matching type.

use bytes::Bytes;

use super::code::RequestCode;
use super::error::{Error, Result};
use super::frame::{encode_body, encode_header, Frame, FrameKind, PROTOCOL_VERSION};
use super::group::{
    GetConsumerListByGroupRequestHeader, HeartbeatData, LockBatchRequestBody,
    NotifyConsumerIdsChangedRequestHeader, UnlockBatchRequestBody, UnregisterClientRequestHeader,
};
use super::message::{
    CheckTransactionStateRequestHeader, ConsumerSendMsgBackRequestHeader,
    EndTransactionRequestHeader, GetEarliestMsgStoretimeRequestHeader, GetMaxOffsetRequestHeader,
    GetMinOffsetRequestHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    QueryMessageRequestHeader, SearchOffsetRequestHeader, SendMessageRequestHeader,
    UpdateConsumerOffsetRequestHeader, ViewMessageRequestHeader,
};
use super::route::{
    GetRouteInfoRequestHeader, RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader,
};
use super::topic::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    GetConsumeStatsRequestHeader, GetTopicStatsInfoRequestHeader, TopicConfigWrapper,
};

/// A decoded request: the header (and body) its code calls for, already typed.
///
/// Raw payloads (message bytes, batches, stored messages) stay `Bytes` that share the
/// receive buffer; typed bodies (heartbeat, lock sets, topic tables) are decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `SEND_MESSAGE`: header and message body.
    SendMessage(SendMessageRequestHeader, Bytes),
    /// `SEND_BATCH_MESSAGE`: header and encoded batch.
    SendBatchMessage(SendMessageRequestHeader, Bytes),
    /// `PULL_MESSAGE`.
    PullMessage(PullMessageRequestHeader),
    /// `QUERY_MESSAGE`.
    QueryMessage(QueryMessageRequestHeader),
    /// `QUERY_CONSUMER_OFFSET`.
    QueryConsumerOffset(QueryConsumerOffsetRequestHeader),
    /// `UPDATE_CONSUMER_OFFSET`.
    UpdateConsumerOffset(UpdateConsumerOffsetRequestHeader),
    /// `UPDATE_AND_CREATE_TOPIC`.
    UpdateAndCreateTopic(CreateTopicRequestHeader),
    /// `GET_ALL_TOPIC_CONFIG` (no header).
    GetAllTopicConfig,
    /// `GET_ALL_CONSUMER_OFFSET` (no header).
    GetAllConsumerOffset,
    /// `GET_BROKER_RUNTIME_INFO` (no header).
    GetBrokerRuntimeInfo,
    /// `SEARCH_OFFSET_BY_TIMESTAMP`.
    SearchOffsetByTimestamp(SearchOffsetRequestHeader),
    /// `GET_MAX_OFFSET`.
    GetMaxOffset(GetMaxOffsetRequestHeader),
    /// `GET_MIN_OFFSET`.
    GetMinOffset(GetMinOffsetRequestHeader),
    /// `GET_EARLIEST_MSG_STORETIME`.
    GetEarliestMsgStoretime(GetEarliestMsgStoretimeRequestHeader),
    /// `VIEW_MESSAGE_BY_ID`.
    ViewMessageById(ViewMessageRequestHeader),
    /// `HEART_BEAT`: the body, no header.
    HeartBeat(HeartbeatData),
    /// `UNREGISTER_CLIENT`.
    UnregisterClient(UnregisterClientRequestHeader),
    /// `CONSUMER_SEND_MSG_BACK`.
    ConsumerSendMsgBack(ConsumerSendMsgBackRequestHeader),
    /// `END_TRANSACTION`.
    EndTransaction(EndTransactionRequestHeader),
    /// `GET_CONSUMER_LIST_BY_GROUP`.
    GetConsumerListByGroup(GetConsumerListByGroupRequestHeader),
    /// `CHECK_TRANSACTION_STATE` (broker → producer): header and the stored half message.
    CheckTransactionState(CheckTransactionStateRequestHeader, Bytes),
    /// `NOTIFY_CONSUMER_IDS_CHANGED` (broker → consumer).
    NotifyConsumerIdsChanged(NotifyConsumerIdsChangedRequestHeader),
    /// `LOCK_BATCH_MQ`: the body, no header.
    LockBatchMq(LockBatchRequestBody),
    /// `UNLOCK_BATCH_MQ`: the body, no header.
    UnlockBatchMq(UnlockBatchRequestBody),
    /// `REGISTER_BROKER`: header and the broker's topic table.
    RegisterBroker(RegisterBrokerRequestHeader, TopicConfigWrapper),
    /// `UNREGISTER_BROKER`.
    UnregisterBroker(UnregisterBrokerRequestHeader),
    /// `GET_ROUTEINFO_BY_TOPIC`.
    GetRouteInfoByTopic(GetRouteInfoRequestHeader),
    /// `GET_BROKER_CLUSTER_INFO` (no header).
    GetBrokerClusterInfo,
    /// `GET_TOPIC_STATS_INFO`.
    GetTopicStatsInfo(GetTopicStatsInfoRequestHeader),
    /// `GET_ALL_TOPIC_LIST_FROM_NAMESERVER` (no header).
    GetAllTopicListFromNameserver,
    /// `GET_CONSUME_STATS`.
    GetConsumeStats(GetConsumeStatsRequestHeader),
    /// `DELETE_TOPIC_IN_BROKER`.
    DeleteTopicInBroker(DeleteTopicRequestHeader),
    /// `DELETE_TOPIC_IN_NAMESRV`.
    DeleteTopicInNamesrv(DeleteTopicFromNamesrvRequestHeader),
    /// `WATCH_ROUTES` (actimq).
    WatchRoutes(crate::protocol::route::WatchRoutesRequestHeader),
    /// `INVOKE_BROKER_TO_RESET_OFFSET`.
    InvokeBrokerToResetOffset(crate::protocol::group::ResetOffsetRequestHeader),
    /// `RESET_CONSUMER_CLIENT_OFFSET`: header and the new offsets.
    ResetConsumerClientOffset(
        crate::protocol::group::ResetOffsetRequestHeader,
        crate::protocol::group::ResetOffsetBody,
    ),
}

/// A send's header: every send carries one, so the direct decoder reads it; anything it
/// does not take goes through serde, which gives the errors.
fn send_header(frame: &Frame) -> Result<crate::protocol::message::SendMessageRequestHeader> {
    match super::direct_codec::send_header(&frame.header) {
        Some(header) => Ok(header),
        None => frame.decode_header(),
    }
}

/// Decodes a request or one-way frame into a typed [`Request`].
///
/// # Errors
/// - [`Error::NotARequest`] for a response frame;
/// - [`Error::VersionNotSupported`] for a version this build cannot read;
/// - [`Error::UnknownCode`] for a code this build does not know;
/// - [`Error::BadHeader`] / [`Error::BadBody`] when header or body do not fit the code.
///
/// All of these leave the connection usable: answer with [`Frame::error_reply`].
pub fn decode_request(frame: &Frame) -> Result<Request> {
    if frame.kind == FrameKind::Response {
        return Err(Error::NotARequest {
            opaque: frame.opaque,
            code: frame.code,
        });
    }
    if !(1..=PROTOCOL_VERSION).contains(&frame.version) {
        return Err(Error::VersionNotSupported {
            version: frame.version,
            supported: PROTOCOL_VERSION,
        });
    }
    let code = RequestCode::from_i32(frame.code).ok_or(Error::UnknownCode(frame.code))?;
    let body = || frame.body.clone();
    Ok(match code {
        RequestCode::SendMessage => Request::SendMessage(send_header(frame)?, body()),
        RequestCode::SendBatchMessage => Request::SendBatchMessage(send_header(frame)?, body()),
        RequestCode::PullMessage => Request::PullMessage(frame.decode_header()?),
        RequestCode::QueryMessage => Request::QueryMessage(frame.decode_header()?),
        RequestCode::QueryConsumerOffset => Request::QueryConsumerOffset(frame.decode_header()?),
        RequestCode::UpdateConsumerOffset => Request::UpdateConsumerOffset(frame.decode_header()?),
        RequestCode::UpdateAndCreateTopic => Request::UpdateAndCreateTopic(frame.decode_header()?),
        RequestCode::GetAllTopicConfig => Request::GetAllTopicConfig,
        RequestCode::GetAllConsumerOffset => Request::GetAllConsumerOffset,
        RequestCode::GetBrokerRuntimeInfo => Request::GetBrokerRuntimeInfo,
        RequestCode::SearchOffsetByTimestamp => {
            Request::SearchOffsetByTimestamp(frame.decode_header()?)
        }
        RequestCode::GetMaxOffset => Request::GetMaxOffset(frame.decode_header()?),
        RequestCode::GetMinOffset => Request::GetMinOffset(frame.decode_header()?),
        RequestCode::GetEarliestMsgStoretime => {
            Request::GetEarliestMsgStoretime(frame.decode_header()?)
        }
        RequestCode::ViewMessageById => Request::ViewMessageById(frame.decode_header()?),
        RequestCode::HeartBeat => Request::HeartBeat(frame.decode_body()?),
        RequestCode::UnregisterClient => Request::UnregisterClient(frame.decode_header()?),
        RequestCode::ConsumerSendMsgBack => Request::ConsumerSendMsgBack(frame.decode_header()?),
        RequestCode::EndTransaction => Request::EndTransaction(frame.decode_header()?),
        RequestCode::GetConsumerListByGroup => {
            Request::GetConsumerListByGroup(frame.decode_header()?)
        }
        RequestCode::CheckTransactionState => {
            Request::CheckTransactionState(frame.decode_header()?, body())
        }
        RequestCode::NotifyConsumerIdsChanged => {
            Request::NotifyConsumerIdsChanged(frame.decode_header()?)
        }
        RequestCode::LockBatchMq => Request::LockBatchMq(frame.decode_body()?),
        RequestCode::UnlockBatchMq => Request::UnlockBatchMq(frame.decode_body()?),
        RequestCode::RegisterBroker => {
            Request::RegisterBroker(frame.decode_header()?, frame.decode_body()?)
        }
        RequestCode::UnregisterBroker => Request::UnregisterBroker(frame.decode_header()?),
        RequestCode::GetRouteInfoByTopic => Request::GetRouteInfoByTopic(frame.decode_header()?),
        RequestCode::GetBrokerClusterInfo => Request::GetBrokerClusterInfo,
        RequestCode::GetTopicStatsInfo => Request::GetTopicStatsInfo(frame.decode_header()?),
        RequestCode::GetAllTopicListFromNameserver => Request::GetAllTopicListFromNameserver,
        RequestCode::GetConsumeStats => Request::GetConsumeStats(frame.decode_header()?),
        RequestCode::DeleteTopicInBroker => Request::DeleteTopicInBroker(frame.decode_header()?),
        RequestCode::DeleteTopicInNamesrv => Request::DeleteTopicInNamesrv(frame.decode_header()?),
        RequestCode::WatchRoutes => Request::WatchRoutes(frame.decode_header()?),
        RequestCode::InvokeBrokerToResetOffset => {
            Request::InvokeBrokerToResetOffset(frame.decode_header()?)
        }
        RequestCode::ResetConsumerClientOffset => {
            Request::ResetConsumerClientOffset(frame.decode_header()?, frame.decode_body()?)
        }
    })
}

impl TryFrom<&Frame> for Request {
    type Error = Error;

    fn try_from(frame: &Frame) -> Result<Self> {
        decode_request(frame)
    }
}

impl Request {
    /// The request code this variant is sent with.
    pub fn code(&self) -> RequestCode {
        match self {
            Request::SendMessage(..) => RequestCode::SendMessage,
            Request::SendBatchMessage(..) => RequestCode::SendBatchMessage,
            Request::PullMessage(_) => RequestCode::PullMessage,
            Request::QueryMessage(_) => RequestCode::QueryMessage,
            Request::QueryConsumerOffset(_) => RequestCode::QueryConsumerOffset,
            Request::UpdateConsumerOffset(_) => RequestCode::UpdateConsumerOffset,
            Request::UpdateAndCreateTopic(_) => RequestCode::UpdateAndCreateTopic,
            Request::GetAllTopicConfig => RequestCode::GetAllTopicConfig,
            Request::GetAllConsumerOffset => RequestCode::GetAllConsumerOffset,
            Request::GetBrokerRuntimeInfo => RequestCode::GetBrokerRuntimeInfo,
            Request::SearchOffsetByTimestamp(_) => RequestCode::SearchOffsetByTimestamp,
            Request::GetMaxOffset(_) => RequestCode::GetMaxOffset,
            Request::GetMinOffset(_) => RequestCode::GetMinOffset,
            Request::GetEarliestMsgStoretime(_) => RequestCode::GetEarliestMsgStoretime,
            Request::ViewMessageById(_) => RequestCode::ViewMessageById,
            Request::HeartBeat(_) => RequestCode::HeartBeat,
            Request::UnregisterClient(_) => RequestCode::UnregisterClient,
            Request::ConsumerSendMsgBack(_) => RequestCode::ConsumerSendMsgBack,
            Request::EndTransaction(_) => RequestCode::EndTransaction,
            Request::GetConsumerListByGroup(_) => RequestCode::GetConsumerListByGroup,
            Request::CheckTransactionState(..) => RequestCode::CheckTransactionState,
            Request::NotifyConsumerIdsChanged(_) => RequestCode::NotifyConsumerIdsChanged,
            Request::LockBatchMq(_) => RequestCode::LockBatchMq,
            Request::UnlockBatchMq(_) => RequestCode::UnlockBatchMq,
            Request::RegisterBroker(..) => RequestCode::RegisterBroker,
            Request::UnregisterBroker(_) => RequestCode::UnregisterBroker,
            Request::GetRouteInfoByTopic(_) => RequestCode::GetRouteInfoByTopic,
            Request::GetBrokerClusterInfo => RequestCode::GetBrokerClusterInfo,
            Request::GetTopicStatsInfo(_) => RequestCode::GetTopicStatsInfo,
            Request::GetAllTopicListFromNameserver => RequestCode::GetAllTopicListFromNameserver,
            Request::GetConsumeStats(_) => RequestCode::GetConsumeStats,
            Request::DeleteTopicInBroker(_) => RequestCode::DeleteTopicInBroker,
            Request::DeleteTopicInNamesrv(_) => RequestCode::DeleteTopicInNamesrv,
            Request::WatchRoutes(_) => RequestCode::WatchRoutes,
            Request::InvokeBrokerToResetOffset(_) => RequestCode::InvokeBrokerToResetOffset,
            Request::ResetConsumerClientOffset(..) => RequestCode::ResetConsumerClientOffset,
        }
    }

    /// A request frame (expecting a response) carrying this request.
    ///
    /// # Errors
    /// [`Error::Encode`] if a header or body fails to serialize (a programming error).
    pub fn to_frame(&self, opaque: u32) -> Result<Frame> {
        self.frame_of_kind(FrameKind::Request, opaque)
    }

    /// A one-way frame (never answered) carrying this request.
    ///
    /// # Errors
    /// [`Error::Encode`] if a header or body fails to serialize (a programming error).
    pub fn to_oneway_frame(&self, opaque: u32) -> Result<Frame> {
        self.frame_of_kind(FrameKind::Oneway, opaque)
    }

    /// Builds the frame: envelope from `kind`/`opaque`/[`Request::code`], then the parts.
    fn frame_of_kind(&self, kind: FrameKind, opaque: u32) -> Result<Frame> {
        let (header, body) = self.parts()?;
        Ok(Frame {
            header,
            body,
            ..Frame::new(kind, opaque, self.code().as_i32())
        })
    }

    /// Encoded header and body; the inverse of [`decode_request`].
    fn parts(&self) -> Result<(Bytes, Bytes)> {
        let none = Bytes::new;
        Ok(match self {
            Request::SendMessage(h, b) | Request::SendBatchMessage(h, b) => {
                (encode_header(h)?, b.clone())
            }
            Request::PullMessage(h) => (encode_header(h)?, none()),
            Request::QueryMessage(h) => (encode_header(h)?, none()),
            Request::QueryConsumerOffset(h) => (encode_header(h)?, none()),
            Request::UpdateConsumerOffset(h) => (encode_header(h)?, none()),
            Request::UpdateAndCreateTopic(h) => (encode_header(h)?, none()),
            Request::SearchOffsetByTimestamp(h) => (encode_header(h)?, none()),
            Request::GetMaxOffset(h) => (encode_header(h)?, none()),
            Request::GetMinOffset(h) => (encode_header(h)?, none()),
            Request::GetEarliestMsgStoretime(h) => (encode_header(h)?, none()),
            Request::ViewMessageById(h) => (encode_header(h)?, none()),
            Request::HeartBeat(b) => (none(), encode_body(b)?),
            Request::UnregisterClient(h) => (encode_header(h)?, none()),
            Request::ConsumerSendMsgBack(h) => (encode_header(h)?, none()),
            Request::EndTransaction(h) => (encode_header(h)?, none()),
            Request::GetConsumerListByGroup(h) => (encode_header(h)?, none()),
            Request::CheckTransactionState(h, b) => (encode_header(h)?, b.clone()),
            Request::NotifyConsumerIdsChanged(h) => (encode_header(h)?, none()),
            Request::LockBatchMq(b) => (none(), encode_body(b)?),
            Request::UnlockBatchMq(b) => (none(), encode_body(b)?),
            Request::RegisterBroker(h, b) => (encode_header(h)?, encode_body(b)?),
            Request::UnregisterBroker(h) => (encode_header(h)?, none()),
            Request::GetRouteInfoByTopic(h) => (encode_header(h)?, none()),
            Request::GetTopicStatsInfo(h) => (encode_header(h)?, none()),
            Request::GetConsumeStats(h) => (encode_header(h)?, none()),
            Request::DeleteTopicInBroker(h) => (encode_header(h)?, none()),
            Request::DeleteTopicInNamesrv(h) => (encode_header(h)?, none()),
            Request::WatchRoutes(h) => (encode_header(h)?, none()),
            Request::InvokeBrokerToResetOffset(h) => (encode_header(h)?, none()),
            Request::ResetConsumerClientOffset(h, b) => (encode_header(h)?, encode_body(b)?),
            Request::GetAllTopicConfig
            | Request::GetAllConsumerOffset
            | Request::GetBrokerRuntimeInfo
            | Request::GetBrokerClusterInfo
            | Request::GetAllTopicListFromNameserver => (none(), none()),
        })
    }
}
