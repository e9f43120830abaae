//! One actor per probe: runs [`run_target`] for the target attached to it on a blocking thread,
//! so a hung or unplugged probe stalls only this actor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use crate::events::EventSink;
use crate::fixture::TargetFixture;
use crate::provisioning::{run_target, Failed, Job, Provisioned, StationFault, Step};

/// The fixture a probe actor drives; kept by the supervisor across actor restarts.
pub type SharedFixture = Arc<Mutex<Box<dyn TargetFixture>>>;

/// Runs the flow on the next target.
#[derive(Message)]
#[rtype(result = "Result<Provisioned, Failed>")]
pub struct RunTarget(pub Job);

/// The actor of one probe.
pub struct ProbeActor {
    fixture: SharedFixture,
    events: EventSink,
    step_timeout: Duration,
}

impl ProbeActor {
    /// An actor for `fixture`.
    pub fn new(fixture: SharedFixture, events: EventSink, step_timeout: Duration) -> Self {
        Self {
            fixture,
            events,
            step_timeout,
        }
    }
}

impl Actor for ProbeActor {
    type Context = Context<Self>;
}

impl Handler<RunTarget> for ProbeActor {
    type Result = ResponseFuture<Result<Provisioned, Failed>>;

    fn handle(&mut self, msg: RunTarget, _ctx: &mut Self::Context) -> Self::Result {
        let fixture = self.fixture.clone();
        let events = self.events.clone();
        let timeout = self.step_timeout;
        Box::pin(async move {
            let job = msg.0;
            let outcome = tokio::task::spawn_blocking(move || {
                let mut fixture = fixture.lock().unwrap_or_else(|p| p.into_inner());
                let result = run_target(&mut **fixture, &job, timeout, &events);
                crate::metrics::target(fixture.name(), &result);
                result
            })
            .await;
            // `run_target` catches panics itself: this is the runtime cancelling the thread.
            outcome.unwrap_or_else(|join| Err(lost(join.to_string())))
        })
    }
}

/// A target whose thread or actor was lost before it answered.
pub fn lost(why: String) -> Failed {
    Failed {
        serial: None,
        step: Step::Connect,
        certified: false,
        error: StationFault::FlowCrashed(why).into(),
    }
}
