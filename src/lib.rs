//! jitsi-scaler: autoscaler for Jitsi video-sip-gateway pools.
#![forbid(unsafe_code)]

pub mod plan;
pub mod sim;
