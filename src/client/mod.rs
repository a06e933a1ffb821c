//! The client's public vocabulary: messages, send results, consumer settings and errors.
//!
//! Plain data shared by the producer and consumer actors in `crate::actors` and by
//! applications. Nothing here does I/O.

mod error;
mod message;

pub use error::ClientError;
pub use message::{
    ConsumeFromWhere, ConsumeResult, Message, MessageExt, MessageModel, SendResult, SendStatus,
};
