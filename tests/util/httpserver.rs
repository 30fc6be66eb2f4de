//! A static file server (`python3 -m http.server`) on a free 127.0.0.1 port, serving a
//! folder, as a classic Helm chart repository is served. The child is killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct HttpServer {
    child: Child,
    /// Listening port on 127.0.0.1.
    pub port: u16,
}

impl HttpServer {
    /// Serves `dir`; a start that loses its port to another process is retried on another.
    pub fn start(dir: &Path) -> HttpServer {
        let python = super::require_tool("python3", "python3");
        for _ in 0..20 {
            let port = super::free_port();
            let child = Command::new(&python)
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .arg("--directory")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn python3 -m http.server");
            let mut server = HttpServer { child, port };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("python3 -m http.server found no free port in 20 attempts");
    }

    /// Whether the server answers HTTP on its port (false: it exited, the port was taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"HEAD / HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "python3 -m http.server did not answer on port {}",
            self.port
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
