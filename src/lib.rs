//! jitsi-scaler: autoscaler for Jitsi video-sip-gateway pools.
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod duration;
pub mod lifecycle;
