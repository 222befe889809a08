//! Capture from image folders, video files and an HTTP MJPEG camera (all fed with rendered
//! frames): frames arrive, a slow reader loses the oldest, a source that disappears and returns
//! is reconnected, a missing source is an error counted, never a panic.
use anyhow::{ensure, Context, Result};
use bcp_anpr::capture::{Camera, CameraHealth, CaptureConfig, Source};
use bcp_anpr::{AnprConfig, NativePaths, PlateReader};
use bcp_sim::plate_render::{render_vehicle_frame, render_vehicle_mat};
use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn fast() -> CaptureConfig {
    CaptureConfig {
        queue_frames: 2,
        open_timeout_ms: 2_000,
        read_timeout_ms: 2_000,
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        folder_poll_ms: 20,
    }
}

fn drop_frame(dir: &Path, name: &str, plate: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, render_vehicle_frame(plate, 1)?)?;
    std::fs::rename(&tmp, dir.join(name))?; // appear whole, as a camera upload should
    Ok(())
}

fn wait_health(cam: &Camera, what: &str, ok: impl Fn(&CameraHealth) -> bool) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if ok(&cam.health()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("{what}: health stayed {:?}", cam.health())
}

#[test]
fn a_folder_camera_delivers_new_files_and_comes_back_after_it_disappears() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("cam");
    std::fs::create_dir(&dir)?;
    drop_frame(&dir, "0001.jpg", "1234 AB 01")?;
    drop_frame(&dir, "0002.jpg", "0567 CD 02")?;
    std::fs::write(dir.join("0003.jpg"), b"corrupt")?;
    let cam = Camera::start("lane1", Source::Folder(dir.clone()), &fast())?;
    for seq in 1..=2 {
        let f = cam
            .next_frame(Duration::from_secs(5))
            .with_context(|| format!("frame {seq}"))?;
        ensure!(f.seq == seq && f.image.cols() == 960 && f.image.rows() == 540);
    }
    wait_health(&cam, "the corrupt file is an error", |h| {
        h.connected && h.frames == 2 && h.errors == 1
    })?;

    std::fs::remove_dir_all(&dir)?;
    wait_health(&cam, "the folder is gone", |h| {
        !h.connected && h.errors >= 2
    })?;
    std::fs::create_dir(&dir)?;
    drop_frame(&dir, "0004.jpg", "4321 KM 04")?;
    let f = cam
        .next_frame(Duration::from_secs(10))
        .context("a frame after the folder returned")?;
    ensure!(f.seq == 3, "seq {}", f.seq);
    wait_health(&cam, "reconnected", |h| h.connected && h.reconnects >= 1)?;
    Ok(())
}

#[test]
fn a_slow_reader_gets_the_newest_frames() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for i in 1..=5 {
        drop_frame(dir.path(), &format!("{i:04}.jpg"), "1234 AB 01")?;
    }
    let cam = Camera::start("lane2", Source::Folder(dir.path().into()), &fast())?;
    wait_health(&cam, "all captured", |h| h.frames == 5)?;
    let seqs: Vec<u64> = std::iter::from_fn(|| cam.next_frame(Duration::from_millis(100)))
        .map(|f| f.seq)
        .collect();
    ensure!(seqs == vec![4, 5], "{seqs:?}");
    ensure!(cam.health().dropped == 3, "{:?}", cam.health());
    Ok(())
}

#[test]
fn a_video_file_replays_and_a_missing_stream_is_an_error_not_a_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let video = dir.path().join("lane.avi");
    let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G')?;
    let mut w = videoio::VideoWriter::new(&video, fourcc, 10.0, Size::new(960, 540), true)?;
    ensure!(w.is_opened()?, "OpenCV cannot write MJPG AVI here");
    for i in 0..4 {
        w.write(&render_vehicle_mat("1234 AB 01", i)?)?;
    }
    w.release()?;

    let cfg = CaptureConfig {
        queue_frames: 16,
        ..fast()
    };
    let cam = Camera::start("file", Source::Stream(video.to_string_lossy().into()), &cfg)?;
    let mut got = 0;
    while got < 6 {
        let f = cam
            .next_frame(Duration::from_secs(10))
            .with_context(|| format!("frame {}", got + 1))?;
        ensure!(f.image.cols() == 960 && f.image.rows() == 540);
        got += 1;
    }
    ensure!(cam.health().reconnects >= 1, "replayed: {:?}", cam.health());

    let missing = dir.path().join("no-such-camera.avi");
    let cam = Camera::start(
        "gone",
        Source::Stream(missing.to_string_lossy().into()),
        &fast(),
    )?;
    wait_health(&cam, "open failures counted", |h| {
        h.errors >= 2 && !h.connected
    })?;
    ensure!(cam.next_frame(Duration::from_millis(50)).is_none());
    let started = Instant::now();
    drop(cam);
    ensure!(started.elapsed() < Duration::from_secs(3), "stops promptly");
    Ok(())
}

/// A test MJPEG camera on loopback: `GET` any path and get `multipart/x-mixed-replace` with one
/// JPEG part every 50 ms, as IP cameras serve it. Stopping it closes every connection and the
/// listening socket; dropping it stops it.
struct MjpegServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

const BOUNDARY: &str = "bcpframe";

impl MjpegServer {
    /// Serves `jpeg` on `addr` (port 0 for any free one).
    fn start(addr: SocketAddr, jpeg: Vec<u8>) -> Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let jpeg = Arc::new(jpeg);
        let accept = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut clients = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (stop, jpeg) = (Arc::clone(&stop), Arc::clone(&jpeg));
                            clients.push(std::thread::spawn(move || {
                                // A client that goes away ends its thread; nothing to report.
                                let _ = serve(conn, &stop, &jpeg);
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                clients // the listener is closed here, before the clients are joined
            })
        };
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/video.mjpg", self.addr)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            for client in accept.join().unwrap_or_default() {
                let _ = client.join();
            }
        }
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the request head, then writes parts until stopped or the client leaves.
fn serve(mut conn: TcpStream, stop: &AtomicBool, jpeg: &[u8]) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    write!(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    while !stop.load(Ordering::Relaxed) {
        write!(
            conn,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )?;
        conn.write_all(jpeg)?;
        conn.write_all(b"\r\n")?;
        std::thread::sleep(Duration::from_millis(50));
    }
    conn.shutdown(std::net::Shutdown::Both)
}

fn jpeg_of(mat: &Mat) -> Result<Vec<u8>> {
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 90]);
    ensure!(imgcodecs::imencode(".jpg", mat, &mut buf, &params)?);
    Ok(buf.to_vec())
}

/// Mean absolute difference per channel value between two frames of the same size.
fn mean_abs_diff(a: &Mat, b: &Mat) -> Result<f64> {
    let l1 = opencv::core::norm2(a, b, opencv::core::NORM_L1, &opencv::core::no_array())?;
    Ok(l1 / (a.total() * a.channels() as usize) as f64)
}

/// The plate reader when the native stack is installed (the other capture tests do not need
/// it); an installed stack that does not load is a failure.
fn reader_if_installed() -> Result<Option<PlateReader>> {
    if let Err(e) = NativePaths::from_env().check() {
        eprintln!("not reading plates from the MJPEG frames: {e}");
        return Ok(None);
    }
    Ok(Some(PlateReader::new(&AnprConfig::from_env())?))
}

/// Waits for the next frame and checks it is the rendered `expected` (and reads its plate).
fn check_frame(
    cam: &Camera,
    expected: &Mat,
    plate: &str,
    reader: &mut Option<PlateReader>,
) -> Result<u64> {
    check_frame_within(cam, expected, plate, reader, 4.0)
}

/// [`check_frame`] with the mean absolute difference allowed (a lossy codec needs more).
fn check_frame_within(
    cam: &Camera,
    expected: &Mat,
    plate: &str,
    reader: &mut Option<PlateReader>,
    max_diff: f64,
) -> Result<u64> {
    let f = cam
        .next_frame(Duration::from_secs(10))
        .with_context(|| format!("a frame showing {plate}: {:?}", cam.health()))?;
    ensure!(
        (f.image.cols(), f.image.rows()) == (960, 540),
        "{}x{}",
        f.image.cols(),
        f.image.rows()
    );
    let diff = mean_abs_diff(&f.image, expected)?;
    ensure!(
        diff < max_diff,
        "frame {} differs from the rendered one by {diff:.1}",
        f.seq
    );
    if let Some(reader) = reader {
        let reads = reader.read_mat(&f.image)?;
        let best = reads.first().map(|r| r.text.as_str());
        ensure!(best == Some(plate), "read {best:?}, rendered {plate}");
    }
    Ok(f.seq)
}

#[test]
fn an_http_mjpeg_camera_delivers_frames_goes_down_and_reconnects() -> Result<()> {
    let first = render_vehicle_mat("1234 AB 01", 3)?;
    let second = render_vehicle_mat("0567 CD 02", 4)?;
    let mut server = MjpegServer::start("127.0.0.1:0".parse()?, jpeg_of(&first)?)?;
    let addr = server.addr;
    let mut reader = reader_if_installed()?;
    let cam = Camera::start("mjpeg", Source::parse(&server.url()), &fast())?;

    let seq = check_frame(&cam, &first, "1234AB01", &mut reader)?;
    wait_health(&cam, "connected", |h| h.connected && h.errors == 0)?;

    server.stop();
    wait_health(&cam, "the stream is down", |h| {
        !h.connected && h.errors >= 1
    })?;
    while cam.next_frame(Duration::from_millis(100)).is_some() {} // frames from before the cut
    let down = cam.health();
    ensure!(down.reconnects == 0, "not reconnected yet: {down:?}");

    let _server = MjpegServer::start(addr, jpeg_of(&second)?)?; // the camera comes back
    let again = check_frame(&cam, &second, "0567CD02", &mut reader)?;
    ensure!(again > seq, "seq {again} after {seq}");
    wait_health(&cam, "reconnected", |h| h.connected && h.reconnects == 1)?;
    drop(cam); // before the server, which would otherwise be seen going down again
    Ok(())
}

/// A test IP camera speaking RTSP on loopback, as cameras serve it: `OPTIONS`, `DESCRIBE` (an SDP
/// offering one MPEG transport stream track, RTP payload type 33), `SETUP` (RTP interleaved on
/// the RTSP connection; UDP is refused with 461 so that the client falls back to TCP, as it
/// does behind NAT), `PLAY`, then the transport stream's packets, seven per RTP packet, looped
/// at about real time. One client at a time; stopped (every connection closed) when dropped.
struct RtspServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl RtspServer {
    fn start(ts: Vec<u8>, frames_per_second: f64, frames: usize) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let ts = Arc::new(ts);
        // One pass through the file lasts as long as its frames do.
        let pass = Duration::from_secs_f64(frames as f64 / frames_per_second);
        let accept = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Err(e) = rtsp_session(conn, &ts, pass, &stopping) {
                            eprintln!("rtsp test server: session ended: {e}");
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    fn url(&self) -> String {
        format!("rtsp://{}/lane", self.addr)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One client: requests until `PLAY`, then the stream until it hangs up or the server stops.
fn rtsp_session(
    mut conn: TcpStream,
    ts: &[u8],
    pass: Duration,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut pending = Vec::new();
    loop {
        let request = read_request(&mut conn, &mut pending)?;
        let cseq = header(&request, "CSeq").unwrap_or("0").to_owned();
        let method = request.split_whitespace().next().unwrap_or("");
        let url = request.split_whitespace().nth(1).unwrap_or("");
        let reply = match method {
            "OPTIONS" => format!(
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"
            ),
            "DESCRIBE" => {
                let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bcp test camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\na=control:track0\r\n";
                format!(
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: {url}/\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                )
            }
            "SETUP" if header(&request, "Transport").is_some_and(|t| t.contains("RTP/AVP/TCP")) => {
                format!(
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4711\r\n\r\n"
                )
            }
            "SETUP" => format!("RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n"),
            "PLAY" => {
                conn.write_all(
                    format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 4711\r\nRange: npt=0.000-\r\n\r\n")
                        .as_bytes(),
                )?;
                return stream_ts(&mut conn, ts, pass, stop);
            }
            "TEARDOWN" => return Ok(()),
            _ => format!("RTSP/1.0 501 Not Implemented\r\nCSeq: {cseq}\r\n\r\n"),
        };
        conn.write_all(reply.as_bytes())?;
    }
}

/// The next request (head and body, if any: clients send none here) from `conn`.
fn read_request(conn: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<String> {
    let mut buf = [0u8; 2048];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The transport stream as RTP (payload type 33, 7 TS packets each) interleaved on channel 0,
/// looped, one pass per `pass`.
fn stream_ts(
    conn: &mut TcpStream,
    ts: &[u8],
    pass: Duration,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    const CHUNK: usize = 7 * 188;
    let chunks = ts.len().div_ceil(CHUNK).max(1);
    let per_chunk = pass / chunks as u32;
    let (mut seq, mut loops) = (0u16, 0u32);
    while !stop.load(Ordering::Relaxed) {
        for (i, chunk) in ts.chunks(CHUNK).enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let elapsed = pass * loops + per_chunk * i as u32;
            let timestamp = (elapsed.as_secs_f64() * 90_000.0) as u32;
            let mut rtp = Vec::with_capacity(12 + chunk.len());
            rtp.extend_from_slice(&[0x80, 33]);
            rtp.extend_from_slice(&seq.to_be_bytes());
            rtp.extend_from_slice(&timestamp.to_be_bytes());
            rtp.extend_from_slice(&0x0bc9_0001u32.to_be_bytes());
            rtp.extend_from_slice(chunk);
            let mut frame = vec![b'$', 0];
            frame.extend_from_slice(&(rtp.len() as u16).to_be_bytes());
            frame.extend_from_slice(&rtp);
            conn.write_all(&frame)?;
            seq = seq.wrapping_add(1);
            std::thread::sleep(per_chunk);
        }
        loops += 1;
    }
    Ok(())
}

/// Rendered frames of `plate` as an MPEG-4 video in an MPEG transport stream, as an IP camera
/// would stream them.
fn transport_stream_of(plate: &str, frames: usize, dir: &Path) -> Result<(Mat, Vec<u8>)> {
    let video = dir.join("lane.ts");
    let fourcc = videoio::VideoWriter::fourcc('m', 'p', '4', 'v')?;
    let mut w = videoio::VideoWriter::new(&video, fourcc, 10.0, Size::new(960, 540), true)?;
    ensure!(
        w.is_opened()?,
        "OpenCV cannot write an MPEG transport stream here"
    );
    let frame = render_vehicle_mat(plate, 5)?;
    for _ in 0..frames {
        w.write(&frame)?;
    }
    w.release()?;
    Ok((frame, std::fs::read(&video)?))
}

#[test]
fn an_rtsp_camera_delivers_frames_over_rtp_interleaved_on_tcp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (rendered, ts) = transport_stream_of("0567 CD 02", 20, dir.path())?;
    let server = RtspServer::start(ts, 10.0, 20)?;
    let mut reader = reader_if_installed()?;
    let cfg = CaptureConfig {
        open_timeout_ms: 10_000,
        read_timeout_ms: 10_000,
        ..fast()
    };
    let cam = Camera::start("rtsp", Source::parse(&server.url()), &cfg)?;
    // The first frames after joining a stream may be partial until a key frame: take a few.
    let mut last = Err(anyhow::anyhow!("no frame"));
    for _ in 0..5 {
        // MPEG-4 at OpenCV's default quality: lossy.
        last = check_frame_within(&cam, &rendered, "0567CD02", &mut reader, 12.0);
        if last.is_ok() {
            break;
        }
    }
    last?;
    wait_health(&cam, "connected", |h| h.connected && h.frames >= 1)?;
    drop(cam);
    drop(server);
    Ok(())
}
