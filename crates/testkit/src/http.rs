//! Shared by the wire-level tests: a local HTTP/1.1 server that records what
//! the SDK sends, and just enough CBOR to read and write Smithy RPC v2 bodies.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the whole request had arrived.
    pub received: std::time::Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/x-amz-json-1.1".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn cbor(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type", "application/cbor".into()),
                ("smithy-protocol", "rpc-v2-cbor".into()),
            ],
            body,
        }
    }
}

pub struct Server {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Serves on 127.0.0.1 until the test process ends, answering each
    /// request with `respond`.
    pub fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let log = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, respond) = (log.clone(), respond.clone());
                thread::spawn(move || serve_connection(stream, &log, &*respond));
            }
        });
        Self { url, requests }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

fn serve_connection(
    stream: TcpStream,
    log: &Mutex<Vec<Recorded>>,
    respond: &(dyn Fn(&Recorded) -> Reply + Send + Sync),
) {
    // Without this, a head and a body written separately wait out the
    // peer's delayed ACK (about 40 ms a request on Linux).
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().expect("clonable socket");
    let mut reader = BufReader::new(stream);
    // HTTP/1.1 keep-alive: several requests may share the connection.
    while let Some(request) = read_request(&mut reader) {
        log.lock().expect("not poisoned").push(request.clone());
        let reply = respond(&request);
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(&reply.body);
        if writer.write_all(&message).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
        received: std::time::Instant::now(),
    })
}

// ------------------------------------------------------------------ CBOR

/// Decodes one CBOR item into JSON, writing tag 1 (epoch time) as
/// `{"$epoch": seconds}` so a test can tell timestamps from numbers.
pub fn cbor_to_json(bytes: &[u8]) -> Value {
    let mut at = 0;
    let value = decode(bytes, &mut at).expect("a CBOR item");
    assert_eq!(at, bytes.len(), "trailing bytes after the CBOR item");
    value
}

enum Item {
    Value(Value),
    Break,
}

fn decode(bytes: &[u8], at: &mut usize) -> Option<Value> {
    match decode_item(bytes, at)? {
        Item::Value(v) => Some(v),
        Item::Break => None,
    }
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let slice = bytes.get(*at..*at + n)?;
    *at += n;
    Some(slice)
}

fn argument(bytes: &[u8], at: &mut usize, info: u8) -> Option<u64> {
    let be = |s: &[u8]| s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Some(match info {
        0..=23 => u64::from(info),
        24 => be(take(bytes, at, 1)?),
        25 => be(take(bytes, at, 2)?),
        26 => be(take(bytes, at, 4)?),
        27 => be(take(bytes, at, 8)?),
        _ => return None,
    })
}

fn decode_item(bytes: &[u8], at: &mut usize) -> Option<Item> {
    let initial = *take(bytes, at, 1)?.first()?;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let indefinite = info == 31;
    let value = match major {
        0 => json!(argument(bytes, at, info)?),
        1 => json!(-1 - argument(bytes, at, info)? as i64),
        2 => {
            let n = argument(bytes, at, info)? as usize;
            json!({ "$bytes": take(bytes, at, n)?.to_vec() })
        }
        3 if indefinite => {
            let mut text = String::new();
            while let Item::Value(Value::String(chunk)) = decode_item(bytes, at)? {
                text.push_str(&chunk);
            }
            Value::String(text)
        }
        3 => {
            let n = argument(bytes, at, info)? as usize;
            Value::String(String::from_utf8(take(bytes, at, n)?.to_vec()).ok()?)
        }
        4 => {
            let mut items = Vec::new();
            if indefinite {
                while let Item::Value(v) = decode_item(bytes, at)? {
                    items.push(v);
                }
            } else {
                for _ in 0..argument(bytes, at, info)? {
                    items.push(decode(bytes, at)?);
                }
            }
            Value::Array(items)
        }
        5 => {
            let mut map = Map::new();
            let len = if indefinite {
                None
            } else {
                Some(argument(bytes, at, info)?)
            };
            loop {
                if len == Some(map.len() as u64) {
                    break;
                }
                let key = match decode_item(bytes, at)? {
                    Item::Break => break,
                    Item::Value(Value::String(key)) => key,
                    Item::Value(other) => panic!("non-text map key {other}"),
                };
                map.insert(key, decode(bytes, at)?);
            }
            Value::Object(map)
        }
        6 => {
            let tag = argument(bytes, at, info)?;
            let inner = decode(bytes, at)?;
            match tag {
                1 => json!({ "$epoch": inner }),
                other => json!({ format!("$tag{other}"): inner }),
            }
        }
        7 => match info {
            20 => json!(false),
            21 => json!(true),
            22 | 23 => Value::Null,
            25 => json!(half_to_f64(argument(bytes, at, info)? as u16)),
            26 => json!(f64::from(f32::from_bits(argument(bytes, at, info)? as u32))),
            27 => json!(f64::from_bits(argument(bytes, at, info)?)),
            31 => return Some(Item::Break),
            _ => return None,
        },
        _ => return None,
    };
    Some(Item::Value(value))
}

fn half_to_f64(bits: u16) -> f64 {
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    };
    if bits & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Writes CBOR, definite lengths only; what a server would send.
#[derive(Default)]
pub struct Cbor(pub Vec<u8>);

impl Cbor {
    fn head(&mut self, major: u8, n: u64) -> &mut Self {
        let major = major << 5;
        match n {
            0..=23 => self.0.push(major | n as u8),
            24..=0xff => self.0.extend([major | 24, n as u8]),
            0x100..=0xffff => {
                self.0.push(major | 25);
                self.0.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(major | 26);
                self.0.extend((n as u32).to_be_bytes());
            }
            _ => {
                self.0.push(major | 27);
                self.0.extend(n.to_be_bytes());
            }
        }
        self
    }

    pub fn map(&mut self, len: usize) -> &mut Self {
        self.head(5, len as u64)
    }

    pub fn array(&mut self, len: usize) -> &mut Self {
        self.head(4, len as u64)
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(3, s.len() as u64);
        self.0.extend(s.as_bytes());
        self
    }

    pub fn f64(&mut self, x: f64) -> &mut Self {
        self.0.push(0xfb);
        self.0.extend(x.to_be_bytes());
        self
    }

    /// Tag 1 over integer epoch seconds.
    pub fn epoch(&mut self, secs: u64) -> &mut Self {
        self.0.push(0xc1);
        self.head(0, secs)
    }
}
