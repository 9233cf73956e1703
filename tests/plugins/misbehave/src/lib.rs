//! Test plugin that misbehaves on request, to prove the host contains it. The payload's
//! `misbehave` field says how: `trap` (panic), `loop` (never returns), `alloc` (allocates without
//! bound), `recurse` (overflows the stack), `error` (returns an error), `retry` (asks to retry),
//! `fail-then-ok` (fails on the first attempt after writing kv, succeeds later), `spin` (busy for
//! `spin_ms` milliseconds, then succeeds; `spin-first` only on the first attempt), `huge` (a
//! 10 MiB error), `fetch` (GETs the payload's
//! `url`, reporting the outcome as its skip reason), `kvflood` (sets keys without end), `kvhoard`
//! (sets 256 KiB values until the host refuses one, reporting how many it stored), `logspam`
//! (logs 100,000 lines), `env` / `file`
//! (tries to read the environment or a file through WASI); anything else succeeds. Every
//! successful event increments kv `ok`.
use hookhost_guest::prelude::*;

struct Misbehave;

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(n % 256) as usize] = n as u8;
    let mut next = [0u8; 256];
    next[0] = pad[0];
    recurse(n + 1, &mut next) + u64::from(pad[1])
}

impl Plugin for Misbehave {
    fn handle(event: Event) -> Result<Outcome> {
        let payload: serde_json::Value = event.payload_as()?;
        let mode = payload["misbehave"].as_str().unwrap_or("");
        kv::set_string(&format!("touched/{}", event.id), mode)?;
        match mode {
            "trap" => panic!("misbehave: deliberate panic"),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                let mut pad = [0u8; 256];
                let n = recurse(0, &mut pad);
                return Ok(Outcome::Skipped(format!("impossible: {n}")));
            }
            "error" => bail!("misbehave: deliberate error"),
            "huge" => bail!("misbehave: {}", "x".repeat(10 << 20)),
            "fetch" => {
                let url = payload["url"].as_str().unwrap_or("http://127.0.0.1:9/");
                return Ok(match http::get(url) {
                    Ok(r) => Outcome::Skipped(format!("fetched {}: {}", r.status, r.text())),
                    Err(e) => Outcome::Skipped(format!("fetch refused: {e}")),
                });
            }
            "kvflood" => {
                for i in 0..100_000 {
                    kv::set(&format!("flood/{i}"), b"x")?;
                }
            }
            "kvhoard" => {
                let value = vec![b'h'; 256 * 1024];
                for i in 0..100_000u32 {
                    if let Err(e) = kv::set(&format!("hoard/{i}"), &value) {
                        return Ok(Outcome::Skipped(format!(
                            "kv refused after {i} values: {e}"
                        )));
                    }
                }
                return Ok(Outcome::Skipped("kv never refused".into()));
            }
            "logspam" => {
                for i in 0..100_000 {
                    info!("spam line {i} {}", "y".repeat(100));
                }
            }
            "spin" | "spin-first" if mode == "spin" || event.attempt == 1 => {
                let ms = payload["spin_ms"].as_u64().unwrap_or(1000);
                let start = std::time::Instant::now();
                while start.elapsed().as_millis() < u128::from(ms) {
                    std::hint::spin_loop();
                }
            }
            "retry" => return Ok(Outcome::RetryAfter(1)),
            "fail-then-ok" if event.attempt == 1 => {
                kv::set_string("fail-then-ok/leaked", "this write must not survive")?;
                return Err(Error::msg("misbehave: first attempt fails"));
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                return Ok(Outcome::Skipped(format!(
                    "env vars visible: {}",
                    vars.len()
                )));
            }
            "clock" => {
                // What time it is, as far as the plugin can tell (wall and monotonic clocks).
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let start = std::time::Instant::now();
                let mut x: u64 = 0;
                for _ in 0..5_000_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                return Ok(Outcome::Skipped(format!(
                    "wall {wall} ms, monotonic advanced {} ns",
                    start.elapsed().as_nanos()
                )));
            }
            "hugeskip" => return Ok(Outcome::Skipped("y".repeat(10 << 20))),
            "count" => {
                // A read-modify-write of one key shared by every order of the tenant, slowed
                // down so that concurrent attempts overlap.
                let n: u64 = kv::get_json("shared-counter")?.unwrap_or(0);
                let mut x: u64 = 0;
                for _ in 0..2_000_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                kv::set_json("shared-counter", &(n + 1))?;
                return Ok(Outcome::Done);
            }
            "file" => {
                return match std::fs::read_to_string("/etc/passwd") {
                    Ok(_) => Err(Error::msg("misbehave: could read /etc/passwd")),
                    Err(e) => Ok(Outcome::Skipped(format!("file access refused: {e}"))),
                };
            }
            _ => {}
        }
        let ok: u64 = kv::get_json("ok")?.unwrap_or(0);
        kv::set_json("ok", &(ok + 1))?;
        Ok(Outcome::Done)
    }
}

export_plugin!(Misbehave);
