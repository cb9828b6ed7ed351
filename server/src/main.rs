//! The `authmcp-gateway` binary: parses the command line, loads the configuration and hands
//! over to the library.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use authmcp_gateway::app::{App, shutdown_signal};
use authmcp_gateway::config::Config;
use authmcp_gateway::db::Db;
use authmcp_gateway::state::AppState;
use authmcp_gateway::{accounts, telemetry};
use clap::{Parser, Subcommand};
use shared::auth::Role;

/// jemalloc instead of glibc's malloc (why, and what it was measured against: server/Cargo.toml
/// and docs/PERFORMANCE.md), with its default settings and its background thread (the
/// `background_threads` feature): allocations of 8 MiB and more (an argon2id hash's 19 MiB)
/// come from an arena of their own that returns them to the system at once, so logins leave
/// nothing resident; other freed pages go back over about ten seconds, purged by that thread,
/// so an idle gateway too returns what start-up or a burst freed. It is the process's `malloc`
/// too (`unprefixed_malloc_on_supported_platforms`), so SQLite's C code allocates from it
/// rather than from glibc arenas of its own that kept freed memory.
/// Operators can tune it with `MALLOC_CONF` (docs/CONFIG.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "authmcp-gateway",
    version,
    about = "The secure front door for MCP servers"
)]
struct Cli {
    /// TOML file with settings (lowercase variable names); environment variables win.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an admin account. The password is read from standard input (one line), never
    /// from the command line.
    CreateAdmin {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
    },
    /// Set a user's password and end their sessions. The password is read from standard input
    /// (one line), never from the command line.
    ResetPassword {
        #[arg(long)]
        username: String,
    },
    /// Generate a new JWT signing key and retire the current one (it keeps verifying the tokens
    /// it signed until they expire).
    RotateSigningKey,
    /// Validate the configuration, print it with secrets redacted, and exit.
    CheckConfig,
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Ask the running gateway whether it is ready (`GET /ready` on its port, through
    /// loopback when it listens on every address): exit status 0 when it answers 200, 1
    /// otherwise. For container health checks; needs no shell or curl.
    Healthcheck {
        /// Give up after this many seconds (all attempts together).
        #[arg(long, default_value_t = 4)]
        timeout: u64,
    },
    /// Scan an MCP endpoint for security problems (docs/SECURITY_TESTING.md) and print the
    /// findings. Exit status: 1 with high findings; otherwise 2 when the scan or one of its
    /// checks could not run; 0 when clean. For CI pipelines.
    Audit {
        /// The MCP endpoint, e.g. https://mcp.example.com/mcp.
        url: String,
        /// A bearer token to scan as an authenticated client (or `AUTHMCP_AUDIT_TOKEN`, which
        /// keeps it out of the process list).
        #[arg(long)]
        token: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Allow loopback and private addresses (refused by default, before anything is sent).
        #[arg(long)]
        allow_private: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The scanner needs no configuration or database.
    if let Some(Command::Audit {
        url,
        token,
        json,
        allow_private,
    }) = &cli.command
    {
        let token = token
            .clone()
            .or_else(|| std::env::var("AUTHMCP_AUDIT_TOKEN").ok())
            .filter(|t| !t.is_empty());
        return audit(url, token, *json, *allow_private);
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            // A health probe answers 0 or 1 only (Docker reserves 2).
            if matches!(cli.command, Some(Command::Healthcheck { .. })) {
                return ExitCode::FAILURE;
            }
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Healthcheck { timeout }) = cli.command {
        return healthcheck(
            &config,
            std::time::Duration::from_secs(timeout.clamp(1, 60)),
        );
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `WORKER_THREADS`: the async runtime's threads (default: one per CPU core).
    if let Some(value) = std::env::var_os("WORKER_THREADS") {
        match value.to_str().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(n @ 1..=1024) => {
                builder.worker_threads(n);
            }
            _ => {
                eprintln!("error: WORKER_THREADS must be a whole number from 1 to 1024");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /ready` over plain HTTP/1.0 on the gateway's own port: 0 when it answers 200. On an
/// unspecified host it tries loopback (IPv6 `::` also through IPv4, for hosts without IPv6
/// loopback), all within `timeout`.
fn healthcheck(config: &Config, timeout: std::time::Duration) -> ExitCode {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let hosts = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        IpAddr::V6(ip) if ip.is_unspecified() => {
            vec![
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ]
        }
        ip => vec![ip],
    };
    let deadline = std::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let mut last = String::from("no answer");
    for host in hosts {
        let addr = SocketAddr::new(host, config.port);
        let answer = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect_timeout(
                &addr,
                left().max(std::time::Duration::from_millis(1)),
            )?;
            stream.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            // Read until the status line is complete (or the time is up).
            let mut head = Vec::with_capacity(64);
            let mut buf = [0u8; 64];
            while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 256 {
                let rest = left();
                if rest.is_zero() {
                    break;
                }
                stream.set_read_timeout(Some(rest))?;
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            Ok(String::from_utf8_lossy(&head).into_owned())
        })();
        match answer {
            Ok(head) if head.starts_with("HTTP/1.") && head.get(9..12) == Some("200") => {
                return ExitCode::SUCCESS;
            }
            Ok(head) => last = head.lines().next().unwrap_or("no answer").to_string(),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    eprintln!("not ready: {last}");
    ExitCode::FAILURE
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            telemetry::init(config.log_format, &config.log_level);
            // Linux only: where tikv-jemalloc-sys keeps the prefix (macOS), the old name is read.
            if cfg!(target_os = "linux") && std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
                tracing::warn!(
                    "_RJEM_MALLOC_CONF is set but no longer read: jemalloc is the process's malloc and reads MALLOC_CONF (docs/CONFIG.md)"
                );
            }
            authmcp_gateway::conn::raise_fd_limit();
            let app = App::build(config).await?;
            let addr = app.local_addr()?;
            tracing::info!(
                %addr,
                public_url = %app.state().config.public_url,
                max_connections = app.state().connections.max(),
                "AuthMCP Gateway listening"
            );
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            telemetry::init(config.log_format, &config.log_level);
            let db = Db::connect(&config.database, 1).await?;
            db.migrate().await?;
            println!(
                "{} migrations applied ({})",
                db.applied_migrations().await?,
                db.backend.name()
            );
            Ok(())
        }
        Command::CreateAdmin { username, email } => {
            telemetry::init(config.log_format, "warn");
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let state = AppState::init(config).await?;
            let user = accounts::create_user(
                &state.db,
                &username,
                password,
                email.as_deref(),
                Role::Admin,
                state.config.password_min_length,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created admin `{}` (id {})", user.username, user.id);
            Ok(())
        }
        Command::ResetPassword { username } => {
            telemetry::init(config.log_format, "warn");
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let state = AppState::init(config).await?;
            let user = accounts::cli_reset_password(&state, &username, password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Running replicas on Postgres end the user's sessions at once.
            state
                .changes
                .send_now(&state.db.pool, authmcp_gateway::feed::Change::User(user.id))
                .await;
            println!(
                "password of `{}` (id {}) set; their sessions have ended",
                user.username, user.id
            );
            Ok(())
        }
        Command::RotateSigningKey => {
            telemetry::init(config.log_format, "warn");
            let state = AppState::init(config).await?;
            let kid = state.keys.rotate().await?;
            // Running replicas on Postgres switch at once; on SQLite within a minute.
            state
                .changes
                .send_now(&state.db.pool, authmcp_gateway::feed::Change::Keys)
                .await;
            println!(
                "new signing key {kid}; previous keys keep verifying their tokens until they expire (running gateways switch to it at once on Postgres, within a minute on SQLite)"
            );
            Ok(())
        }
        Command::CheckConfig => {
            println!("{config:#?}");
            match &config.web_dir {
                Some(dir) if !dir.join("index.html").is_file() => println!(
                    "note: WEB_DIR {} has no index.html; the admin UI will not be served (cargo xtask build-web)",
                    dir.display()
                ),
                Some(_) => {}
                None if !authmcp_gateway::spa::EMBEDDED => println!(
                    "note: this binary was built without the admin UI and WEB_DIR is not set; the admin UI will not be served (cargo xtask build-web, then rebuild)"
                ),
                None => {}
            }
            println!("configuration is valid");
            Ok(())
        }
        Command::Healthcheck { .. } | Command::Audit { .. } => Ok(()),
        Command::Openapi => {
            let (_, openapi) = authmcp_gateway::app::api_parts();
            println!("{}", openapi.to_pretty_json()?);
            Ok(())
        }
    }
}

/// `authmcp-gateway audit`: one scan, printed.
fn audit(url: &str, token: Option<String>, as_json: bool, allow_private: bool) -> ExitCode {
    use authmcp_gateway::audit::{self, Target};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(async {
        let parsed = audit::preflight(url, allow_private).await?;
        let target = Target {
            url: url.to_string(),
            token,
            allow_private,
            server: None,
            server_id: None,
            others: Vec::new(),
        };
        let hook: audit::Hook<'_> = Box::new(|_, _, _| Box::pin(async { true }));
        tokio::time::timeout(audit::SCAN_DEADLINE, audit::run(target, parsed, hook))
            .await
            .map_err(|_| audit::ScanError("the scan took too long".into()))
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if as_json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        // What the target sent is shown without control characters (no terminal escapes).
        let shown = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
        println!("MCP security scan of {}", shown(&report.target));
        for f in &report.findings {
            println!("\n[{}] {}", f.severity.to_uppercase(), shown(&f.title));
            println!("    {}", f.detail);
            println!("    Fix: {}", f.fix);
            if let Some(e) = &f.evidence {
                println!("    Seen: {}", shown(e));
            }
        }
        println!();
        for c in &report.checks {
            let note = c
                .note
                .as_deref()
                .map(|n| format!(" ({})", shown(n)))
                .unwrap_or_default();
            println!("  {:<8} {}{note}", c.status, c.name);
        }
        let s = report.summary;
        println!(
            "\n{} high, {} medium, {} low, {} info; {} tools listed",
            s.high, s.medium, s.low, s.info, report.tools
        );
    }
    if report.summary.high > 0 {
        ExitCode::FAILURE
    } else if report.checks.iter().any(|c| c.status == "error") {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
