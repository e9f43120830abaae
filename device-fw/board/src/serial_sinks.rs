//! What every board's update-link UART offers besides [`SerialPort`](crate::hal::SerialPort):
//! the protocol's `FrameSink` (services reply straight onto the port) and `core::fmt::Write`
//! (banners). A macro, not a blanket impl: both traits are foreign to this crate.

/// Implements `FrameSink` and `core::fmt::Write` for a `SerialPort` type, through `write_all`.
macro_rules! serial_sinks {
    ($port:ty) => {
        /// The protocol's UART services reply straight onto the port.
        impl flashgate_protocol::uart::FrameSink for $port {
            fn send_frame(&mut self, frame: &[u8]) {
                $crate::hal::SerialPort::write_all(self, frame);
            }
        }

        impl core::fmt::Write for $port {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                $crate::hal::SerialPort::write_all(self, s.as_bytes());
                Ok(())
            }
        }
    };
}
