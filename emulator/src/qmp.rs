//! A minimal QMP (QEMU Machine Protocol) client: one connection per command sequence. Public so
//! tests can act on a running board from another thread (e.g. `quit` it mid-transfer).

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::{json, Value};

/// A QMP connection that has done the `qmp_capabilities` handshake.
pub struct QmpConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl QmpConnection {
    /// Connects, reads the greeting and negotiates capabilities.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut conn = QmpConnection {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = conn.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected QMP greeting {greeting}"));
        }
        conn.execute("qmp_capabilities", None)?;
        Ok(conn)
    }

    fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("QEMU closed the QMP connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("bad QMP message {line:?}: {e}"))
    }

    /// Runs one command and returns its `return` value; events in between are skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut bytes = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).map_err(|e| e.to_string())?;
        loop {
            let message = self.read_message()?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                return Err(format!("QEMU answered {error}"));
            }
            // Asynchronous events ({"event": ...}) are not answers: skip them.
        }
    }
}
