//! `hookhost dev`: the merchant's inner loop for a plugin in Rust, JavaScript or Python. It
//! serves a local host (the embedded store, a `dev` tenant with one source per provider, the
//! sink) and, whenever the plugin's sources change, builds it — `cargo build --target
//! wasm32-wasip2 --release` for a crate, componentize-js for `app.js`, componentize-py for
//! `app.py` (the pinned tools, installed into the project on first use) — and hot-swaps the new
//! component in through the same hot-reload path production uses. One line per reload says the
//! version and the time taken; a failing build prints the compiler's errors and the previous
//! version keeps serving.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};

use crate::config::Config;
use crate::http::AppState;
use crate::reload::changes_content;

/// The tenant `hookhost dev` serves the plugin as.
pub const DEV_TENANT: &str = "dev";

/// How `hookhost dev` runs.
pub struct DevOptions {
    /// The plugin's folder (holding `Cargo.toml`, `app.js` or `app.py`).
    pub plugin_dir: PathBuf,
    /// Listen here instead of the dev config's address.
    pub listen: Option<SocketAddr>,
}

/// Where a new dev config listens: beside `hookhost serve`'s 8080 (the demo's), not on it.
pub const DEV_LISTEN: &str = "127.0.0.1:8787";

/// Builds, serves and rebuilds on change until interrupted.
pub async fn dev(options: DevOptions) -> Result<()> {
    let dir = std::path::absolute(&options.plugin_dir)?;
    let kind = PluginKind::detect(&dir)?;
    let package = kind.name(&dir);
    let state = dir.join(".hookhost-dev");
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    let config_path = state.join("hookhost.toml");
    if !config_path.exists() {
        let listen = options
            .listen
            .unwrap_or_else(|| DEV_LISTEN.parse().expect("literal"));
        std::fs::write(&config_path, dev_config(listen))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let mut config = Config::load(&config_path)?;
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    // The port first: a taken one is said now, not after a minute of building.
    let listener = std::net::TcpListener::bind(config.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e} (is another `hookhost dev` or `hookhost serve` running?); pass --listen 127.0.0.1:PORT, or change `listen` in {}",
            config.listen,
            config_path.display()
        )
    })?;
    match kind {
        PluginKind::Rust { .. } => ensure_wasm_target().await,
        PluginKind::JavaScript | PluginKind::Python => install_tools(&dir, kind.clone()).await?,
    }
    // A fresh admin token per run (printed below), and only loopback Host names answered: a web
    // page the developer visits can neither guess the token nor rebind its name to the dev port.
    let admin_token = super::signing::random_id();
    config.admin.token = Some(crate::config::Secret::new(admin_token.clone()));
    config.loopback_host_only = true;
    let plugin_path = config
        .tenants
        .get(DEV_TENANT)
        .map(|t| t.plugin.clone())
        .with_context(|| {
            format!(
                "{} has no [tenants.{DEV_TENANT}]: delete the file to get a fresh one",
                config_path.display()
            )
        })?;

    // Watching starts before the first build: a save made while it runs (a first Rust build
    // takes up to a minute) or just after it is not missed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = dir.clone();
    let kind_for_watch = kind.clone();
    let mut debouncer = new_debouncer(
        Duration::from_millis(100),
        None,
        move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            // cargo reading the sources is an access event: only writes, creations, renames and
            // removals count, or every build would trigger the next.
            let relevant = events
                .iter()
                .filter(|e| changes_content(&e.kind))
                .flat_map(|e| e.paths.iter())
                .any(|p| {
                    let Ok(rel) = p.strip_prefix(&watched) else {
                        return false;
                    };
                    kind_for_watch.is_source(rel)
                });
            if relevant {
                let _ = tx.send(());
            }
        },
    )
    .context("cannot start watching the plugin's sources")?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    for sub in kind.source_dirs(&dir) {
        debouncer
            .watch(&sub, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", sub.display()))?;
    }

    // The first build before serving, so the host starts with the plugin when it builds.
    let first = build(&dir, &kind, &package, true).await;
    if let Ok(artifact) = &first.artifact {
        install(artifact, &plugin_path)?;
    }

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut server = tokio::spawn(crate::server::serve_with(
        config,
        Some(listener),
        Some(ready_tx),
    ));
    let Ok(ready) = ready_rx.await else {
        return server.await.context("the dev host stopped")?;
    };
    let app = ready.state;
    let url = super::session::base_url(ready.addr);
    // The CLI's `--config` finds this run's address and token here.
    super::session::write(
        &config_path,
        &super::session::DevSession {
            url: url.clone(),
            admin_token: admin_token.clone(),
        },
    )?;
    let _session = RemoveOnDrop(config_path.clone());
    let commands = Commands::new(&config_path, &url);
    println!(
        "hookhost dev: plugin {package} serves tenant {DEV_TENANT:?}; config {}, admin token for this run {admin_token:?}",
        config_path.display()
    );
    report(&app, &first, &plugin_path, &commands, true).await;

    let mut built_sources = first.artifact.is_ok().then_some(first.sources);
    loop {
        tokio::select! {
            changed = rx.recv() => {
                if changed.is_none() {
                    break;
                }
                // Several saves in a row make one build.
                while rx.try_recv().is_ok() {}
                let sources = sources_digest(&dir, &kind);
                if built_sources == Some(sources) {
                    println!(
                        "sources unchanged since the last build: {} keeps serving",
                        app.registry
                            .statuses()
                            .get(DEV_TENANT)
                            .and_then(|s| s.version.clone())
                            .map(|v| format!("version {v}"))
                            .unwrap_or_else(|| "its version".into())
                    );
                    continue;
                }
                let outcome = build(&dir, &kind, &package, false).await;
                built_sources = outcome.artifact.is_ok().then_some(outcome.sources);
                if let Ok(artifact) = &outcome.artifact {
                    if let Err(e) = install(artifact, &plugin_path) {
                        println!("cannot install the new build: {e:#}");
                        continue;
                    }
                }
                report(&app, &outcome, &plugin_path, &commands, false).await;
            }
            result = &mut server => return result.context("the dev host stopped")?,
        }
    }
    Ok(())
}

/// Removes the dev session file when the dev host stops (even on an error).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        super::session::remove(&self.0);
    }
}

/// Ready-to-paste commands for this run, printed after each load.
struct Commands {
    /// The dev config as the developer would type it (relative to the working folder when
    /// inside it).
    config: String,
    /// The host's base URL.
    url: String,
}

impl Commands {
    fn new(config: &Path, url: &str) -> Commands {
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| config.strip_prefix(cwd).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| config.to_path_buf());
        Commands {
            config: shown.display().to_string(),
            url: url.to_string(),
        }
    }

    /// The lines to print; `latest`: the newest event, offered for a replay on the new version.
    fn banner(&self, latest: Option<i64>) -> String {
        let config = &self.config;
        let mut lines = vec![
            format!("  console  {}/console  (sign in with this run's admin token)", self.url),
            format!(
                "  send     hookhost send fincart --config {config} --tenant {DEV_TENANT} --source fincart --fresh"
            ),
            format!("  events   hookhost events --config {config} --tenant {DEV_TENANT}"),
        ];
        if let Some(seq) = latest {
            lines.push(format!(
                "  replay   hookhost replay --config {config} --event {seq}   (the latest event, on this version; the same payload sent again is a duplicate: --fresh makes it new)"
            ));
        }
        lines.join("\n")
    }
}

/// A build's result.
struct BuildOutcome {
    /// The component, or the compiler's errors.
    artifact: Result<PathBuf, String>,
    took: Duration,
    /// The sources it was built from ([`sources_digest`], taken before the build).
    sources: [u8; 32],
}

/// What a build tool did.
struct Built {
    /// The component, or the tool's errors.
    artifact: Result<PathBuf, String>,
    took: Duration,
}

/// A digest of the plugin's sources: every file whose change calls for a rebuild, by path and
/// content. A save that changes nothing (an editor touching the file, an edit undone) builds
/// nothing: a JavaScript or Python build is not reproducible, so it would make a new version
/// and pay a full reload.
fn sources_digest(dir: &Path, kind: &PluginKind) -> [u8; 32] {
    use sha2::Digest as _;
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !NOT_SOURCES.contains(&e.file_name().to_string_lossy().as_ref())
        })
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.path().strip_prefix(dir).ok().map(Path::to_path_buf))
        .filter(|rel| kind.is_source(rel))
        .collect();
    files.sort();
    let mut digest = sha2::Sha256::new();
    for rel in files {
        digest.update(rel.to_string_lossy().as_bytes());
        match std::fs::read(dir.join(&rel)) {
            Ok(bytes) => {
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(&bytes);
            }
            Err(_) => digest.update(b"\0unreadable"),
        }
    }
    digest.finalize().into()
}

/// What kind of plugin a folder holds, and so how it is built.
#[derive(Debug, Clone)]
enum PluginKind {
    /// A crate (`Cargo.toml`), built with cargo.
    Rust {
        /// The package's name.
        package: String,
    },
    /// `app.js`, built with componentize-js.
    JavaScript,
    /// `app.py`, built with componentize-py.
    Python,
}

/// Folders that are not the plugin's sources (tools, build output, caches).
const NOT_SOURCES: &[&str] = &[
    ".hookhost-dev",
    "node_modules",
    ".venv",
    "target",
    "__pycache__",
    ".git",
];

impl PluginKind {
    fn detect(dir: &Path) -> Result<PluginKind> {
        if dir.join("Cargo.toml").is_file() {
            return Ok(PluginKind::Rust {
                package: package_name(dir)?,
            });
        }
        if dir.join("app.js").is_file() {
            return Ok(PluginKind::JavaScript);
        }
        if dir.join("app.py").is_file() {
            return Ok(PluginKind::Python);
        }
        bail!(
            "{} holds no plugin: `hookhost dev` builds a Rust crate (Cargo.toml), a JavaScript plugin (app.js) or a Python plugin (app.py); create one with `hookhost new NAME --lang rust|js|python`",
            dir.display()
        )
    }

    /// The plugin's name as the dev host reports it.
    fn name(&self, dir: &Path) -> String {
        match self {
            PluginKind::Rust { package } => package.clone(),
            _ => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into()),
        }
    }

    /// Whether a change to `rel` (relative to the plugin's folder) calls for a rebuild.
    fn is_source(&self, rel: &Path) -> bool {
        if rel
            .components()
            .any(|c| NOT_SOURCES.contains(&c.as_os_str().to_string_lossy().as_ref()))
        {
            return false;
        }
        let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
        match self {
            PluginKind::Rust { .. } => {
                rel.starts_with("src")
                    || rel.starts_with("wit")
                    || rel == Path::new("Cargo.toml")
                    || rel == Path::new("build.rs")
            }
            PluginKind::JavaScript => {
                matches!(ext, "js" | "mjs" | "wit" | "json") && !rel.ends_with("package-lock.json")
            }
            PluginKind::Python => matches!(ext, "py" | "wit"),
        }
    }

    /// The sub-folders to watch recursively (the folder itself is watched non-recursively, so
    /// `node_modules` or `.venv` never cost a watch).
    fn source_dirs(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                !NOT_SOURCES.contains(&name.as_ref())
                    && match self {
                        PluginKind::Rust { .. } => name == "src" || name == "wit",
                        _ => !name.starts_with('.'),
                    }
            })
            .collect()
    }
}

/// The componentize-js CLI: `$HOOKHOST_COMPONENTIZE_JS` (a cli.js), else the project's own
/// pinned install.
fn componentize_js(dir: &Path) -> PathBuf {
    std::env::var_os("HOOKHOST_COMPONENTIZE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("node_modules/@bytecodealliance/componentize-js/src/cli.js"))
}

/// componentize-py: `$HOOKHOST_COMPONENTIZE_PY`, else the project's `.venv`.
fn componentize_py(dir: &Path) -> PathBuf {
    std::env::var_os("HOOKHOST_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join(".venv/bin/componentize-py"))
}

/// Installs the pinned build tool into the project when it is not there yet: `npm install`
/// (package.json pins componentize-js), or a `.venv` with requirements.txt's componentize-py.
async fn install_tools(dir: &Path, kind: PluginKind) -> Result<()> {
    use crate::devloop::scaffold::{
        COMPONENTIZE_JS_VERSION, COMPONENTIZE_PY_VERSION, PREVIEW2_SHIM_VERSION,
    };
    match kind {
        PluginKind::JavaScript if !componentize_js(dir).is_file() => {
            if !dir.join("package.json").is_file() {
                let package = format!(
                    "{{\"private\": true, \"type\": \"module\", \"devDependencies\": {{\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\"}}, \"overrides\": {{\"@bytecodealliance/preview2-shim\": \"{PREVIEW2_SHIM_VERSION}\"}}}}\n"
                );
                std::fs::write(dir.join("package.json"), package)
                    .context("cannot write package.json")?;
            }
            run_tool(
                dir,
                "npm",
                &["install", "--no-audit", "--no-fund", "--loglevel=error"],
            )
            .await
        }
        PluginKind::Python if !componentize_py(dir).is_file() => {
            run_tool(dir, "python3", &["-m", "venv", ".venv"]).await?;
            let requirement = match dir.join("requirements.txt").is_file() {
                true => vec!["-r", "requirements.txt"],
                false => vec![],
            };
            let pinned = format!("componentize-py=={COMPONENTIZE_PY_VERSION}");
            let mut args = vec!["install", "--quiet", "--disable-pip-version-check"];
            args.extend(requirement);
            if !args.contains(&"-r") {
                args.push(&pinned);
            }
            run_tool(dir, ".venv/bin/pip", &args).await
        }
        _ => Ok(()),
    }
}

/// Runs one tool-install command in the plugin's folder, saying what it runs.
async fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    let line = format!("{program} {}", args.join(" "));
    println!("installing the build tool: {line}");
    let status = tokio::process::Command::new(program)
        .current_dir(dir)
        .args(args)
        .status()
        .await
        .with_context(|| format!("cannot run `{line}`: is {program} installed?"))?;
    if !status.success() {
        bail!("`{line}` failed in {}", dir.display());
    }
    Ok(())
}

/// How often a long build says it is still going.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Builds the plugin; on success returns the `.wasm` it produced, else the errors as the compiler
/// printed them. Says that it builds, and every [`PROGRESS_EVERY`] that it still does (a first
/// Rust build compiles the SDK's dependencies: up to a minute).
async fn build(dir: &Path, kind: &PluginKind, package: &str, first: bool) -> BuildOutcome {
    let sources = sources_digest(dir, kind);
    let compiled = AtomicUsize::new(0);
    let started = Instant::now();
    println!(
        "building {package}{}",
        match (kind, first) {
            (PluginKind::Rust { .. }, true) =>
                " (a first build also compiles the SDK's dependencies: up to a minute)",
            (PluginKind::JavaScript, _) => " with componentize-js",
            (PluginKind::Python, _) => " with componentize-py",
            _ => "",
        }
    );
    let work = async {
        match kind {
            PluginKind::Rust { package } => build_crate(dir, package, &compiled).await,
            PluginKind::JavaScript | PluginKind::Python => {
                let key = script_build_key(dir, kind, &sources);
                if let Some(kept) = kept_build(dir, &key) {
                    println!(
                        "  these sources were built before ({}): the same component, the same version",
                        kept.strip_prefix(dir).unwrap_or(&kept).display()
                    );
                    return Built {
                        artifact: Ok(kept),
                        took: started.elapsed(),
                    };
                }
                let built = build_script(dir, kind).await;
                if let Ok(artifact) = &built.artifact {
                    keep_build(dir, &key, artifact);
                }
                built
            }
        }
    };
    tokio::pin!(work);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            built = &mut work => return BuildOutcome { artifact: built.artifact, took: built.took, sources },
            _ = ticks.tick() => {
                let crates = compiled.load(Ordering::Relaxed);
                println!(
                    "  still building ({:.0} s{})",
                    started.elapsed().as_secs_f64(),
                    match crates {
                        0 => String::new(),
                        1 => ", 1 crate compiled".into(),
                        n => format!(", {n} crates compiled"),
                    }
                );
            }
        }
    }
}

/// Where successful script builds are kept, by what they were built from.
const KEPT_BUILDS: &str = ".hookhost-dev/build/by-sources";
/// How many kept builds a project keeps (the newest).
const KEPT_BUILDS_MAX: usize = 8;

/// What a script build's output depends on: the sources, the build tool (its file's size and
/// time) and this hookhost (its SDK and WIT). componentize-js and componentize-py do not
/// produce the same bytes twice, so the same key reuses the component built before instead:
/// the same sources give the same version across saves and restarts, and the host's
/// precompiled cache answers instead of a full compile.
fn script_build_key(dir: &Path, kind: &PluginKind, sources: &[u8; 32]) -> String {
    use sha2::Digest as _;
    let tool = match kind {
        PluginKind::JavaScript => componentize_js(dir),
        _ => componentize_py(dir),
    };
    let mut key = sha2::Sha256::new();
    key.update(sources);
    key.update(env!("CARGO_PKG_VERSION").as_bytes());
    key.update(tool.to_string_lossy().as_bytes());
    if let Ok(meta) = std::fs::metadata(&tool) {
        key.update(meta.len().to_le_bytes());
        if let Ok(modified) = meta.modified() {
            key.update(format!("{modified:?}").as_bytes());
        }
    }
    hex::encode(key.finalize())
}

/// The component kept for `key`, if there is one.
fn kept_build(dir: &Path, key: &str) -> Option<PathBuf> {
    let kept = dir.join(KEPT_BUILDS).join(format!("{key}.wasm"));
    kept.is_file().then_some(kept)
}

/// Keeps a successful build under its key (and only the newest few).
fn keep_build(dir: &Path, key: &str, artifact: &Path) {
    let folder = dir.join(KEPT_BUILDS);
    if std::fs::create_dir_all(&folder).is_err()
        || std::fs::copy(artifact, folder.join(format!("{key}.wasm"))).is_err()
    {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return;
    };
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    kept.sort();
    let excess = kept.len().saturating_sub(KEPT_BUILDS_MAX);
    for (_, old) in kept.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}

/// Builds `app.js` or `app.py` against the project's `wit` folder into `.hookhost-dev/build/`.
async fn build_script(dir: &Path, kind: &PluginKind) -> Built {
    let started = Instant::now();
    let out = dir.join(".hookhost-dev/build/plugin.wasm");
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let wit = match dir.join("wit").is_dir() {
        true => dir.join("wit"),
        false => {
            return Built {
                artifact: Err(format!(
                    "{} has no wit folder: copy hookhost's wit/v0.1.0/plugin.wit into {}/wit",
                    dir.display(),
                    dir.display()
                )),
                took: started.elapsed(),
            }
        }
    };
    let _ = std::fs::remove_file(&out);
    // componentize-js reports a syntax error without saying where, and componentize-py only
    // after its ~10 s build, naming `/0/app.py`: the language's own parser says it at once,
    // with file, line and caret.
    let checked = match kind {
        PluginKind::JavaScript => check_js_syntax(dir).await,
        _ => check_python_syntax(dir).await,
    };
    if let Err(errors) = checked {
        return Built {
            artifact: Err(errors),
            took: started.elapsed(),
        };
    }
    let mut command = match kind {
        PluginKind::JavaScript => {
            let mut c = tokio::process::Command::new("node");
            c.arg(componentize_js(dir))
                .arg("app.js")
                .arg("--wit")
                .arg(&wit)
                .args([
                    "-n",
                    "merchant-plugin",
                    "-d",
                    "http",
                    "-d",
                    "fetch-event",
                    "-o",
                ])
                .arg(&out);
            c
        }
        _ => {
            let mut c = tokio::process::Command::new(componentize_py(dir));
            c.arg("-d")
                .arg(&wit)
                .args([
                    "-w",
                    "merchant-plugin",
                    "componentize",
                    "app",
                    "-p",
                    ".",
                    "-o",
                ])
                .arg(&out)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                // The Python error is what helps, not componentize-py's own Rust backtrace.
                .env("RUST_BACKTRACE", "0")
                .env("RUST_LIB_BACKTRACE", "0");
            c
        }
    };
    // The working directory is the project: componentize-js maps it as the module root, so
    // `./hookhost.js` and other relative imports resolve.
    let output = command.current_dir(dir).output().await;
    let took = started.elapsed();
    let artifact = match output {
        Err(e) => Err(format!("cannot run the build tool: {e}")),
        Ok(o) if o.status.success() && out.is_file() => Ok(out),
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let text = text.split("Stack backtrace:").next().unwrap_or_default();
            Err(text.trim().to_string())
        }
    };
    Built { artifact, took }
}

/// Compiles the project's own Python files (not `.venv`'s) without running or caching them: the
/// first syntax error with its file, line and caret.
async fn check_python_syntax(dir: &Path) -> Result<(), String> {
    const CHECK: &str = r#"import sys, traceback
for name in sys.argv[1:]:
    try:
        compile(open(name, "rb").read(), name, "exec")
    except SyntaxError as e:
        print("".join(traceback.format_exception_only(type(e), e)).rstrip())
        sys.exit(1)
"#;
    let files = own_files(dir, &["py"]);
    if files.is_empty() {
        return Ok(());
    }
    let checked = tokio::process::Command::new("python3")
        .args(["-c", CHECK])
        .args(&files)
        .current_dir(dir)
        .output()
        .await;
    match checked {
        Ok(output) if !output.status.success() && !output.stdout.is_empty() => {
            Err(String::from_utf8_lossy(&output.stdout).trim().to_string())
        }
        // No python3, or it failed otherwise: componentize-py will say what is wrong.
        _ => Ok(()),
    }
}

/// The names of the files directly in `dir` with one of `extensions`, sorted.
fn own_files(dir: &Path, extensions: &[&str]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    files.sort();
    files
}

/// `node --check` on the project's own JavaScript files: the first syntax error with its file,
/// line and a caret.
async fn check_js_syntax(dir: &Path) -> Result<(), String> {
    for name in own_files(dir, &["js", "mjs"]) {
        // Checked as an ES module whatever package.json says (stdin, so the type is explicit).
        let Ok(source) = std::fs::File::open(dir.join(&name)) else {
            continue;
        };
        let checked = tokio::process::Command::new("node")
            .args(["--input-type=module", "--check"])
            .stdin(source)
            .current_dir(dir)
            .output()
            .await;
        if let Ok(output) = checked {
            if !output.status.success() {
                let text = String::from_utf8_lossy(&output.stderr);
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("at ") && !l.starts_with("Node.js v"))
                    .map(|l| l.replace("[stdin]", &name))
                    .collect();
                return Err(lines.join("\n").trim().to_string());
            }
        }
    }
    Ok(())
}

/// Runs cargo; on success returns the `.wasm` it produced, else its errors as the compiler
/// printed them. Reads cargo's messages as they come, counting the crates compiled into
/// `compiled` (the progress a long first build shows).
async fn build_crate(dir: &Path, package: &str, compiled: &AtomicUsize) -> Built {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let started = Instant::now();
    let child = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format",
            if std::io::stdout().is_terminal() {
                "json-diagnostic-rendered-ansi"
            } else {
                "json"
            },
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return Built {
                artifact: Err(format!("cannot run cargo: {e}")),
                took: started.elapsed(),
            }
        }
    };
    let mut stderr = child.stderr.take().expect("piped");
    let stderr = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let mut messages = Vec::new();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" {
            compiled.fetch_add(1, Ordering::Relaxed);
        }
        messages.push(message);
    }
    let success = child.wait().await.is_ok_and(|s| s.success());
    let stderr = stderr.await.unwrap_or_default();
    let took = started.elapsed();
    let mut artifact = None;
    let mut diagnostics = String::new();
    let lib_name = package.replace('-', "_");
    for message in messages {
        match message["reason"].as_str() {
            Some("compiler-message") => {
                if let Some(text) = message["message"]["rendered"].as_str() {
                    diagnostics.push_str(text);
                }
            }
            Some("compiler-artifact") if message["target"]["name"] == lib_name.as_str() => {
                artifact = message["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from);
            }
            _ => {}
        }
    }
    let artifact = match (success, artifact) {
        (true, Some(path)) => Ok(path),
        (true, None) => Err(format!(
            "cargo built no .wasm for {package}: is it a `cdylib` (`[lib] crate-type = [\"cdylib\"]`)?"
        )),
        (false, _) => {
            let tail: Vec<&str> = stderr
                .lines()
                .filter(|l| l.trim_start().starts_with("error"))
                .collect();
            Err(format!("{diagnostics}{}", tail.join("\n")))
        }
    };
    Built { artifact, took }
}

/// Copies the component into place by rename, so the host never sees half a file.
fn install(artifact: &Path, plugin_path: &Path) -> Result<()> {
    let tmp = plugin_path.with_extension("wasm.tmp");
    std::fs::copy(artifact, &tmp).with_context(|| format!("cannot copy {}", artifact.display()))?;
    std::fs::rename(&tmp, plugin_path)
        .with_context(|| format!("cannot replace {}", plugin_path.display()))?;
    Ok(())
}

/// Prints one line about the build and the load it caused (`first`: the run's first build), then
/// the commands to try it. A failed build is also recorded as the tenant's load error, so
/// `hookhost plugins` and the console show it.
async fn report(
    app: &Arc<AppState>,
    outcome: &BuildOutcome,
    plugin_path: &Path,
    commands: &Commands,
    first: bool,
) {
    let serving = || {
        app.registry
            .statuses()
            .get(DEV_TENANT)
            .and_then(|s| s.version.clone())
    };
    let artifact = match &outcome.artifact {
        Ok(a) => a,
        Err(errors) => {
            // Without the terminal's colour codes: the console and the CLI show it.
            let plain = anstream::adapter::strip_str(errors.trim()).to_string();
            app.registry
                .record_build_failure(DEV_TENANT, &format!("build failed: {plain}"));
            println!(
                "build failed after {:.1} s; {} keeps serving\n{}",
                outcome.took.as_secs_f64(),
                serving()
                    .map(|v| format!("version {v}"))
                    .unwrap_or_else(|| "no version (events wait)".into()),
                errors.trim_end()
            );
            return;
        }
    };
    let Ok(bytes) = std::fs::read(artifact) else {
        println!("cannot read {}", artifact.display());
        return;
    };
    let version = crate::runtime::PluginDigest::of(&bytes)
        .version()
        .to_string();
    let started = Instant::now();
    let since_ms = crate::now_ms();
    let deadline = started + Duration::from_secs(120);
    loop {
        let status = app.registry.statuses().get(DEV_TENANT).cloned();
        if let Some(status) = &status {
            if status.version.as_deref() == Some(version.as_str()) {
                let load_ms = status.load_ms.unwrap_or(0);
                let unchanged = !first && status.loaded_at_ms.is_some_and(|at| at < since_ms);
                if unchanged {
                    println!(
                        "built in {:.1} s: unchanged, version {version} keeps serving",
                        outcome.took.as_secs_f64()
                    );
                    return;
                }
                println!(
                    "{} version {version} in {:.1} s (build {:.1} s, load {load_ms} ms)",
                    if first { "loaded" } else { "reloaded" },
                    (outcome.took + started.elapsed()).as_secs_f64(),
                    outcome.took.as_secs_f64(),
                );
                let latest = match first {
                    true => None,
                    false => app
                        .storage
                        .events(DEV_TENANT, 1, None, &Default::default())
                        .await
                        .ok()
                        .and_then(|events| events.first().map(|e| e.seq)),
                };
                println!("{}", commands.banner(latest));
                return;
            }
            if let Some(failed) =
                status.history.iter().rev().find(|r| {
                    r.at_ms >= since_ms && r.result == crate::plugins::ReloadResult::Failed
                })
            {
                println!(
                    "built, but the component did not load; {} keeps serving: {}",
                    serving()
                        .map(|v| format!("version {v}"))
                        .unwrap_or_else(|| "no version".into()),
                    failed.error.as_deref().unwrap_or("")
                );
                return;
            }
        }
        if Instant::now() > deadline {
            println!(
                "built version {version}, but {} was not reloaded within 120 s",
                plugin_path.display()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The crate's package name, from its Cargo.toml.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} has no Cargo.toml: create a plugin with `hookhost new NAME --lang rust|js|python`",
            dir.display()
        )
    })?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    match table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    {
        Some(name) => Ok(name.to_string()),
        None => bail!("{} has no [package] name", manifest.display()),
    }
}

/// Installs the wasm32-wasip2 target when rustup is there and it is missing.
async fn ensure_wasm_target() {
    let installed = tokio::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .await;
    if let Ok(out) = installed {
        if !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
        {
            println!("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
            let _ = tokio::process::Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status()
                .await;
        }
    }
}

/// The dev host's config: one tenant, one source per provider with dev credentials, the sink as
/// the merchant's backend. Written once; the merchant may edit it (it is kept).
fn dev_config(listen: SocketAddr) -> String {
    format!(
        r#"# hookhost dev: a local host for one plugin. Edit freely (allowed_hosts, config values,
# limits); `hookhost dev` keeps this file. Delete it to start over.
listen = "{listen}"
database = "dev.db"
sink = true
retention_hours = 24
# The admin token is new on every run: `hookhost dev` prints it.

[tenants.{DEV_TENANT}]
plugin = "plugin.wasm"
# The built-in sink stands in for your backend: see GET /admin/sink.
allowed_hosts = ["127.0.0.1:{port}"]

[tenants.{DEV_TENANT}.config]
backend-url = "http://127.0.0.1:{port}/sink/backend"

[tenants.{DEV_TENANT}.retry]
max_attempts = 3
base_ms = 500

[tenants.{DEV_TENANT}.sources.fincart]
provider = "fincart"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.sevi]
provider = "sevi"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.juspay]
provider = "juspay"
username = "dev"
password = "dev-password"

[tenants.{DEV_TENANT}.sources.finchpay]
provider = "finchpay"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.selldone]
provider = "selldone"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.stripe]
provider = "stripe"
secret = "whsec_dev"

[tenants.{DEV_TENANT}.sources.shopify]
provider = "shopify"
secret = "dev-secret"

[tenants.{DEV_TENANT}.sources.github]
provider = "github"
secret = "dev-secret"

[tenants.{DEV_TENANT}.sources.standard-webhooks]
provider = "standard-webhooks"
secret = "whsec_ZGV2LXNlY3JldC1mb3ItaG9va2hvc3Q="
"#,
        port = listen.port()
    )
}
