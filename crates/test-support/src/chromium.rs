//! A real headless Chromium for browser tests: load a page, get the DOM as
//! the browser built it (`--dump-dom`), take a screenshot, and check that
//! the screenshot is not blank.
//!
//! Use it as `kendo_test_support::chromium`. It needs
//! the `png` and `tempfile` dev-dependencies.
//!
//! Where Chromium is not installed, [`Chromium::find_or_skip`] prints
//! `SKIPPED: chromium not found` and returns `None`, so the test passes;
//! when the `CI` environment variable is set, that is a failure instead
//! (`apt-get install -y chromium`). `CHROMIUM=/path/to/binary` picks another
//! binary.
//!
//! # Logging in
//!
//! Chromium has no command-line flag for request headers, so a test cannot
//! send `Authorization: Bearer …`. It logs in with HTTP Basic credentials
//! in the URL instead, built by [`admin_url`]:
//! `http://admin:TOKEN@127.0.0.1:PORT/`. Headless Chromium (checked with
//! version 156, `--dump-dom` and `--screenshot`) first asks without
//! credentials, and on a `401` that carries `WWW-Authenticate: Basic …`
//! asks again with `Authorization: Basic base64(admin:TOKEN)`; it then sends
//! them with the page's further requests too. So the server must answer the
//! first request `401` with a `WWW-Authenticate: Basic` header, as browsers
//! require anyway. With a wrong token the page stays the 401 challenge and
//! Chromium dumps an empty document, which [`Chromium::load`] reports as a
//! failure.
//!
//! # Example
//!
//! A self-test of the harness (the real browser test starts the app and
//! sends deliveries first):
//!
//! ```ignore
//! use kendo_test_support::chromium;
//!
//! #[test]
//! fn chromium_renders_a_page() {
//!     let Some(chromium) = chromium::Chromium::find_or_skip("chromium_renders_a_page") else {
//!         return;
//!     };
//!     let dir = tempfile::tempdir().unwrap();
//!     let page = dir.path().join("page.html");
//!     std::fs::write(
//!         &page,
//!         "<!doctype html><h1 id=t>Hello</h1><svg width=800 height=400>\
//!          <rect width=800 height=400 fill=teal /></svg>",
//!     )
//!     .unwrap();
//!     let url = format!("file://{}", page.display());
//!     let loaded = chromium.load(&url, chromium::DESKTOP);
//!     assert!(loaded.dom.contains(r#"<h1 id="t">Hello</h1>"#), "{}", loaded.dom);
//!     assert!(loaded.dom.contains("<svg"));
//!     chromium::assert_not_blank(&loaded.screenshot);
//!
//!     // Behind the app's admin token:
//!     // let loaded = chromium.load(&chromium::admin_url(addr, &token, "/"), chromium::PHONE);
//! }
//! ```
#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A desktop window, in CSS pixels.
pub const DESKTOP: (u32, u32) = (1280, 2000);
/// A phone's window, in CSS pixels.
pub const PHONE: (u32, u32) = (390, 1600);

/// How long one Chromium run may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(90);
/// Pause between two checks whether Chromium ended.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where Chromium is looked for, after `CHROMIUM` and before `PATH`.
const KNOWN_PATHS: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// The flags of every run: headless, no sandbox (tests run as root in CI),
/// and no background traffic to the internet.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

/// An installed Chromium.
#[derive(Debug, Clone)]
pub struct Chromium {
    binary: PathBuf,
}

/// What one page load produced.
#[derive(Debug)]
pub struct Loaded {
    /// The DOM after load, serialized by Chromium (`--dump-dom`).
    pub dom: String,
    /// The screenshot (PNG), in `dir`.
    pub screenshot: PathBuf,
    /// Holds the screenshot; deleted when `Loaded` is dropped (keep it
    /// with [`Loaded::keep_screenshot`]).
    dir: tempfile::TempDir,
}

impl Loaded {
    /// Copies the screenshot to `to` (e.g. `docs/dashboard.png`), creating
    /// its directory.
    pub fn keep_screenshot(&self, to: &Path) {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::copy(&self.screenshot, to).unwrap_or_else(|e| {
            panic!(
                "copy {} to {}: {e}",
                self.screenshot.display(),
                to.display()
            )
        });
    }
}

/// The URL of `path` on the app at `addr`, with the admin token as HTTP
/// Basic password: `http://admin:TOKEN@127.0.0.1:PORT/path`.
///
/// # Panics
///
/// When the token holds characters that a URL's userinfo cannot carry as
/// they are (the app's generated tokens are URL-safe).
pub fn admin_url(addr: SocketAddr, token: &str, path: &str) -> String {
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
        "the token must be URL-safe to go into the URL as it is"
    );
    let path = path.strip_prefix('/').unwrap_or(path);
    format!("http://admin:{token}@{addr}/{path}")
}

impl Chromium {
    /// Finds Chromium: `$CHROMIUM`, then the usual paths, then `chromium`
    /// or `chromium-browser` on `PATH`.
    pub fn find() -> Option<Self> {
        if let Some(path) = std::env::var_os("CHROMIUM") {
            let path = PathBuf::from(path);
            return path.is_file().then_some(Self { binary: path });
        }
        let known = KNOWN_PATHS.iter().map(PathBuf::from);
        let on_path = std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        known
            .chain(on_path)
            .find(|path| path.is_file())
            .map(|binary| Self { binary })
    }

    /// Finds Chromium, or returns `None` after printing a SKIPPED line when
    /// it is not installed.
    ///
    /// # Panics
    ///
    /// When it is not installed and `CI` is set.
    pub fn find_or_skip(test: &str) -> Option<Self> {
        if let Some(chromium) = Self::find() {
            return Some(chromium);
        }
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test}: chromium not found (/usr/bin/chromium or on PATH), and CI is set: \
                 install it (apt-get install -y chromium) so the browser test really runs"
            );
        }
        println!("SKIPPED: chromium not found ({test}); install the chromium package to run it");
        None
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Loads `url` in a window of `size` (width, height in CSS pixels) and
    /// returns its DOM and a screenshot. Two runs of Chromium, each with a
    /// fresh profile.
    ///
    /// # Panics
    ///
    /// When Chromium fails, takes longer than 90 s, or dumps an empty
    /// document (e.g. the page answered 401 to the credentials).
    pub fn load(&self, url: &str, size: (u32, u32)) -> Loaded {
        let dom = self.dump_dom(url, size);
        let dir = tempfile::tempdir().expect("create a temporary directory for the screenshot");
        let screenshot = dir.path().join("screenshot.png");
        self.screenshot(url, size, &screenshot);
        Loaded {
            dom,
            screenshot,
            dir,
        }
    }

    /// The DOM of `url` after load, serialized (`--dump-dom`).
    ///
    /// # Panics
    ///
    /// As [`load`](Self::load).
    pub fn dump_dom(&self, url: &str, size: (u32, u32)) -> String {
        let dir = tempfile::tempdir().expect("create a temporary directory for chromium");
        let out = dir.path().join("dom.html");
        self.run(dir.path(), size, &["--dump-dom"], url, &out);
        let dom = std::fs::read_to_string(&out).expect("read chromium's DOM dump");
        assert!(
            dom.contains("<body") && dom.len() > "<html><head></head><body></body></html>".len(),
            "chromium dumped an empty document for {}: did the server refuse the credentials?\n{dom}",
            redact(url)
        );
        dom
    }

    /// Saves a screenshot of `url` (PNG) at `to`.
    ///
    /// # Panics
    ///
    /// When Chromium fails, takes longer than 90 s, or writes no file.
    pub fn screenshot(&self, url: &str, size: (u32, u32), to: &Path) {
        let dir = tempfile::tempdir().expect("create a temporary directory for chromium");
        let flag = format!("--screenshot={}", to.display());
        self.run(dir.path(), size, &[&flag], url, &dir.path().join("stdout"));
        let written = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        assert!(
            written > 0,
            "chromium wrote no screenshot of {}",
            redact(url)
        );
    }

    /// Runs Chromium once, its standard output to `stdout`, with a profile
    /// in `profile_dir`; kills it after [`DEADLINE`].
    fn run(&self, profile_dir: &Path, size: (u32, u32), extra: &[&str], url: &str, stdout: &Path) {
        let profile = profile_dir.join("profile");
        let stderr_path = profile_dir.join("stderr");
        let mut command = Command::new(&self.binary);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", size.0, size.1))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(File::create(stdout).expect("create chromium's stdout file"))
            .stderr(File::create(&stderr_path).expect("create chromium's stderr file"));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        let started = Instant::now();
        let status = loop {
            match child.try_wait().expect("wait for chromium") {
                Some(status) => break status,
                None if started.elapsed() > DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "chromium took longer than {DEADLINE:?} on {}; its stderr:\n{}",
                        redact(url),
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
                None => std::thread::sleep(POLL_INTERVAL),
            }
        };
        assert!(
            status.success(),
            "chromium failed ({status}) on {}; its stderr:\n{}",
            redact(url),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// What a screenshot holds, roughly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PngStats {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Distinct colors, counted on colors reduced to 4 bits a channel.
    pub distinct_colors: usize,
    /// The share of pixels (0 to 1) that differ from the most common color,
    /// the background.
    pub non_background: f64,
}

/// Decodes a PNG and measures how much it shows.
///
/// # Panics
///
/// When the file is not a PNG this decoder reads.
pub fn png_stats(path: &Path) -> PngStats {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size().expect("a PNG of a sane size")];
    let frame = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("decode {}: {e}", path.display()));
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => unreachable!("EXPAND turns palettes into RGB"),
    };
    let mut counts = std::collections::HashMap::<u16, u64>::new();
    for y in 0..frame.height as usize {
        let line = &buf[y * frame.line_size..][..frame.width as usize * channels];
        for pixel in line.chunks_exact(channels) {
            let (r, g, b) = match channels {
                1 | 2 => (pixel[0], pixel[0], pixel[0]),
                _ => (pixel[0], pixel[1], pixel[2]),
            };
            let key = (u16::from(r >> 4) << 8) | (u16::from(g >> 4) << 4) | u16::from(b >> 4);
            *counts.entry(key).or_default() += 1;
        }
    }
    let total = u64::from(frame.width) * u64::from(frame.height);
    let background = counts.values().copied().max().unwrap_or(0);
    PngStats {
        width: frame.width,
        height: frame.height,
        distinct_colors: counts.len(),
        non_background: if total == 0 {
            0.0
        } else {
            (total - background) as f64 / total as f64
        },
    }
}

/// Asserts that a screenshot shows something: at least 8 distinct colors
/// and 2 % of its pixels off the background. A blank, white or single-color
/// page fails, and so does a line of text alone (a `401 Unauthorized` page
/// in a 1280 × 2000 window is under 0.1 %); the dashboard on a phone is
/// about 11 %.
///
/// # Panics
///
/// When it is blank, or not a PNG.
pub fn assert_not_blank(path: &Path) -> PngStats {
    let stats = png_stats(path);
    assert!(
        stats.width > 0 && stats.height > 0,
        "{} is empty: {stats:?}",
        path.display()
    );
    assert!(
        stats.distinct_colors >= 8 && stats.non_background >= 0.02,
        "{} looks blank: {stats:?}",
        path.display()
    );
    stats
}
