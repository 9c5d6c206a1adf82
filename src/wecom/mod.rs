//! WeCom's side of the wire: callback message types and the typed API client.

pub mod callback;
pub mod client;
pub mod errcodes;
pub mod front;
pub mod idconvert;
pub mod jssdk;
