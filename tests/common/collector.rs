//! A discovery collector on loopback: accepts POSTed batches, keeps them, answers with a status that a
//! test can change (or drops connections without answering, as a collector that is down).

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use super::{parse_headers, read_body, read_head, serve, wake};

/// Answer nothing: close the connection (what a collector that is down looks like to Envoy).
pub const DOWN: u16 = 0;

/// Accepted batches: (content-type, body).
type Batches = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

pub struct Collector {
    pub port: u16,
    status: Arc<AtomicU16>,
    batches: Batches,
    stop: Arc<AtomicBool>,
}

impl Collector {
    pub fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("collector bind");
        let port = listener.local_addr().expect("collector addr").port();
        let status = Arc::new(AtomicU16::new(200));
        let batches: Batches = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, b) = (Arc::clone(&status), Arc::clone(&batches));
        serve(listener, Arc::clone(&stop), move |conn| {
            let _ = connection(conn, &s, &b);
        });
        Collector {
            port,
            status,
            batches,
            stop,
        }
    }

    /// 200, 503, ... or [`DOWN`].
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every batch accepted so far (with a 2xx): (content-type, body).
    pub fn batches(&self) -> Vec<(String, Vec<u8>)> {
        self.batches.lock().expect("batches").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        wake(self.port);
    }
}

fn connection(
    conn: TcpStream,
    status: &AtomicU16,
    batches: &Mutex<Vec<(String, Vec<u8>)>>,
) -> std::io::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    while let Some(lines) = read_head(&mut reader)? {
        let headers = parse_headers(lines.get(1..).unwrap_or_default());
        let body = read_body(&mut reader, &headers, false)?;
        let status = status.load(Ordering::SeqCst);
        if status == DOWN {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        if (200..300).contains(&status) {
            let content_type = headers
                .iter()
                .find(|(n, _)| n == "content-type")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            batches.lock().expect("batches").push((content_type, body));
        }
        write!(writer, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n")?;
        writer.flush()?;
    }
    Ok(())
}
