//! One actor per probe: runs the whole blocking flow for the target attached to it on a
//! blocking thread, so a hung or unplugged probe stalls only this actor.

use std::sync::{Arc, Mutex};

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use crate::events::EventSink;
use crate::fixture::TargetFixture;
use crate::install_flow::{run_target, InstallDone, TargetFailure, TargetJob};

/// The fixture a probe actor drives; kept by the supervisor across actor restarts.
pub type SharedFixture = Arc<Mutex<Box<dyn TargetFixture>>>;

/// Runs the flow on the next target.
#[derive(Message)]
#[rtype(result = "Result<InstallDone, TargetFailure>")]
pub struct RunTarget(pub TargetJob);

/// The actor of one probe.
pub struct ProbeActor {
    fixture: SharedFixture,
    events: EventSink,
}

impl ProbeActor {
    /// An actor for `fixture`.
    pub fn new(fixture: SharedFixture, events: EventSink) -> Self {
        Self { fixture, events }
    }
}

impl Actor for ProbeActor {
    type Context = Context<Self>;
}

impl Handler<RunTarget> for ProbeActor {
    type Result = ResponseFuture<Result<InstallDone, TargetFailure>>;

    fn handle(&mut self, msg: RunTarget, _ctx: &mut Self::Context) -> Self::Result {
        let fixture = self.fixture.clone();
        let events = self.events.clone();
        Box::pin(async move {
            let job = msg.0;
            let outcome = tokio::task::spawn_blocking(move || {
                let mut fixture = fixture.lock().unwrap_or_else(|p| p.into_inner());
                let result = run_target(&mut **fixture, &job, &events);
                crate::metrics::target(&job.probe, &result);
                result
            })
            .await;
            outcome.unwrap_or_else(|join| {
                Err(TargetFailure {
                    serial: None,
                    step: "flow",
                    reason: format!(
                        "the probe's flow crashed ({join}); the probe actor is restarted"
                    ),
                    probe_fault: true,
                })
            })
        })
    }
}
