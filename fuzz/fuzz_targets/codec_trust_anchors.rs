#![no_main]
//! The trust-anchor block a signed OS image pins.
flashgate_fuzz::codec_target!(flashgate_protocol::trust_anchors::TrustAnchors);
