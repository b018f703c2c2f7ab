//! `jitsi-scaler jibri-config`: generate and check the multi-shard `jibri.api.xmpp.environments`
//! of jibri.conf (one environment per shard; see docs/jibri-config.md).

pub mod conf;
pub mod hocon;
