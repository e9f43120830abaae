//! The demo OS's side of the down-link (`docs/protocol.md` §8, "Messages down"): sealed
//! messages from the coordinator, whichever link carried them (the network uplink's TCP
//! connection, or the UART), opened under the device key's down keys and checked against the
//! down window, which is persisted in flash (`DOWN_WINDOW_ADDR`) before the message is acted on:
//! a replay, before or after a reboot, is refused and counted.

use flashgate_board::NorFlash;
use flashgate_protocol::data_stream::{
    open_down, CounterJournal, DownHeader, DownKind, DownWindow, OpenedDown,
};
use flashgate_protocol::device_record::DeviceRecord;
use flashgate_protocol::layout::DOWN_WINDOW_ADDR;
use flashgate_protocol::ErrorCode;

/// A message that passed every check, its window already persisted: the OS carries it out.
pub struct Accepted {
    /// Its header (what the ack names).
    pub header: DownHeader,
    /// What it asks.
    pub kind: DownKind,
    /// Where its body is in the buffer given to [`DownLink::receive`].
    pub body: core::ops::Range<usize>,
}

/// Why a message was refused, and the header it claimed (if it had one).
pub struct Refused {
    /// The header as read (not authenticated when the tag failed).
    pub header: Option<DownHeader>,
    /// Why.
    pub code: ErrorCode,
    /// Messages refused since boot (this one included).
    pub total: u32,
}

/// The down window and the key it opens messages with.
pub struct DownLink {
    // The OS holds its device record for its whole run; this copy lives as long.
    device_key: [u8; 32],
    journal: CounterJournal,
    window: DownWindow,
    refused: u32,
}

impl DownLink {
    /// Reads the persisted window (blank flash: nothing accepted yet).
    pub fn open<F: NorFlash>(flash: &mut F, record: &DeviceRecord) -> Result<Self, ErrorCode> {
        let journal = CounterJournal::load(flash, DOWN_WINDOW_ADDR)?;
        Ok(Self {
            device_key: record.device_key,
            window: DownWindow::from_state(journal.state()),
            journal,
            refused: 0,
        })
    }

    /// Messages refused since boot.
    pub fn refused(&self) -> u32 {
        self.refused
    }

    /// Opens `message` in place, checks it against the window, and persists the window past it
    /// before returning it (so acting on it twice is impossible, even across a power cut).
    pub fn receive<F: NorFlash>(
        &mut self,
        flash: &mut F,
        message: &mut [u8],
    ) -> Result<Accepted, Refused> {
        let claimed = DownHeader::decode(message).ok();
        self.try_receive(flash, message).map_err(|code| {
            self.refused = self.refused.saturating_add(1);
            Refused {
                header: claimed,
                code,
                total: self.refused,
            }
        })
    }

    fn try_receive<F: NorFlash>(
        &mut self,
        flash: &mut F,
        message: &mut [u8],
    ) -> Result<Accepted, ErrorCode> {
        // The cheap check first: a replay costs no HKDF or AEAD.
        self.window.check(&DownHeader::decode(message)?)?;
        let OpenedDown { header, kind, body } = open_down(&self.device_key, message)?;
        let state = self
            .window
            .after(&header)
            .ok_or(ErrorCode::DataCounterExhausted)?;
        self.journal.reserve(flash, state.epoch, state.mark)?;
        self.window.accept(state);
        Ok(Accepted { header, kind, body })
    }
}
