//! The station's actors: one [`supervisor::Supervisor`] (identity, lease, journal, reports) and
//! one [`probe_actor::ProbeActor`] per debug probe (runs the blocking flow for its target).

pub mod probe_actor;
pub mod supervisor;
