//! The `shop` binary as an operator meets it: start-up that fails fast and says why,
//! its logs, the modes of the files it creates, and the operator commands (`migrate`,
//! `migrate --status`, `backup`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use rstest::rstest;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, EmptyPostgres, Nats, free_port};

/// A `shop` command with a clean environment of settings, its files in `dir`.
fn shop(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SHOP_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env(
            "SHOP_DATABASE_URL",
            format!("sqlite://{}", dir.join("shop.db").display()),
        )
        .env("SHOP_DEMO_DATA", "false")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Runs a command to its end (within a minute) and returns what it printed.
async fn finish(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shop");
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("shop did not exit")
    .unwrap()
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running server whose stderr goes to `dir/stderr.log`; killed when dropped.
struct Server {
    child: Child,
    base: String,
    port: u16,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(mut command: Command, dir: &Path) -> Server {
        let port = free_port();
        let stderr = dir.join("stderr.log");
        let child = command
            .env("SHOP_LISTEN", format!("localhost:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start shop");
        let server = Server {
            child,
            // whichever address `localhost` resolves to first is the one served
            base: format!("http://localhost:{port}"),
            port,
            stderr,
        };
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(res) = client
                .get(format!("{}/health/live", server.base))
                .send()
                .await
                && res.status() == StatusCode::OK
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("shop did not start:\n{}", server.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops it with SIGTERM (as an operator would) and waits for its exit.
    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("shop did not stop on SIGTERM");
    }
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A user with `won` charged, through the API: (id, token).
async fn user_with(base: &str, won: i64) -> (i64, String) {
    let client = reqwest::Client::new();
    let (s, b) = send(
        client
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "kim"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (id, token) = (
        b["id"].as_i64().unwrap(),
        b["token"].as_str().unwrap().to_string(),
    );
    let (s, b) = send(
        client
            .post(format!("{base}/api/v1/users/{id}/balance/charge"))
            .bearer_auth(&token)
            .json(&json!({"amount": won})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (id, token)
}

/// A product, then a paid order of it by `user`.
async fn paid_order(base: &str, admin: &str, user: i64, token: &str) {
    let client = reqwest::Client::new();
    let (s, p) = send(
        client
            .post(format!("{base}/api/v1/admin/products"))
            .bearer_auth(admin)
            .json(&json!({"name": "pen", "price": 1000, "stock": 10})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, o) = send(client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(token)
            .json(&json!({"userId": user, "items": [{"productId": p["id"], "quantity": 1}], "pay": true})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_taken_port_fails_fast_naming_it_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut command = shop(dir.path());
    command.env("SHOP_LISTEN", addr.to_string());
    let out = finish(command).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[tokio::test]
async fn a_bad_setting_is_named_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command
        .env("SHOP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SHOP_MAX_CHARGE", "2000")
        .env("SHOP_MAX_BALANCE", "1000");
    let out = finish(command).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SHOP_MAX_CHARGE") && stderr.contains("SHOP_MAX_BALANCE"),
        "{stderr}"
    );
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = shop(dir.path());
    command
        .env("SHOP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "SHOP_DATABASE_URL",
            format!("postgres://postgres:pw-not-shown@127.0.0.1:{port}/shop"),
        )
        .env("SHOP_ADMIN_TOKEN", ADMIN_TOKEN);
    let out = finish(command).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("refused"), "the OS error is told: {stderr}");
    assert!(!stderr.contains("pw-not-shown"), "{stderr}");
}

#[tokio::test]
async fn postgres_without_the_admin_token_is_refused_before_migrations() {
    let pg = EmptyPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command
        .env("SHOP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SHOP_DATABASE_URL", &pg.url);
    let out = finish(command).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("SHOP_ADMIN_TOKEN"), "{stderr}");
    assert_eq!(postgres_tables(&pg.url).await, 0, "no migration ran");
}

async fn postgres_tables(url: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "select count(*) from information_schema.tables where table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    n
}

#[tokio::test]
async fn unreachable_nats_and_redis_are_named_and_readiness_is_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, redis_port) = (free_port(), free_port());
    let mut command = shop(dir.path());
    command
        .env("SHOP_NATS_URL", format!("nats://127.0.0.1:{nats_port}"))
        .env("SHOP_REDIS_URL", format!("redis://127.0.0.1:{redis_port}"));
    let server = Server::start(command, dir.path()).await;
    let (s, body) = send(reqwest::Client::new().get(format!("{}/health/ready", server.base))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"], "down", "{body}");
    assert_eq!(body["checks"]["eventSink"]["kind"], "nats", "{body}");
    assert_eq!(body["checks"]["eventSink"]["status"], "down", "{body}");
    let log = server.log();
    let warned = |needle: &str| {
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(needle))
    };
    assert!(warned(&format!("127.0.0.1:{nats_port}")), "{log}");
    assert!(warned(&format!("127.0.0.1:{redis_port}")), "{log}");
}

#[tokio::test]
async fn a_failing_events_file_is_named_in_the_warning() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("missing-dir").join("events.jsonl");
    let mut command = shop(dir.path());
    command
        .env("SHOP_EVENTS_FILE", &events)
        .env("SHOP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SHOP_OUTBOX_INTERVAL_MS", "20");
    let server = Server::start(command, dir.path()).await;
    let (user, token) = user_with(&server.base, 10_000).await;
    paid_order(&server.base, ADMIN_TOKEN, user, &token).await;
    let path = events.display().to_string();
    for _ in 0..200 {
        if server
            .log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&path))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no warning names {path}:\n{}", server.log());
}

#[tokio::test]
async fn json_logs_are_flat_with_one_line_per_request_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command
        .env("SHOP_LOG_JSON", "1")
        .env("SHOP_ADMIN_TOKEN", ADMIN_TOKEN);
    let server = Server::start(command, dir.path()).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{}/health/ready", server.base))
        .header("x-request-id", "round-trip-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "round-trip-1");
    let (user, token) = user_with(&server.base, 5_000).await;
    let res = client
        .get(format!("{}/api/v1/users/{user}/balance", server.base))
        .bearer_auth(&token)
        .header("x-request-id", "round-trip-2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let port = server.port;
    let status = server.stop().await;
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "no colour when stderr is a file:\n{log}"
    );
    assert!(!log.contains(ADMIN_TOKEN) && !log.contains(&token), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        let fields = line.as_object().expect("each line is an object");
        assert!(!fields.contains_key("fields"), "flat: {line}");
        for key in ["timestamp", "level", "target"] {
            assert!(fields.contains_key(key), "{key} in {line}");
        }
    }
    let request = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id && l["message"] == "request")
            .unwrap_or_else(|| panic!("no request line with id {id}:\n{log}"))
            .clone()
    };
    let ready = request("round-trip-1");
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["method"], "GET");
    assert_eq!(ready["route"], "/health/ready");
    assert_eq!(ready["status"], 200);
    assert!(ready["latency_ms"].as_f64().is_some(), "{ready}");
    let balance = request("round-trip-2");
    assert_eq!(balance["route"], "/api/v1/users/{userId}/balance");
    let started = lines
        .iter()
        .find(|l| l["version"].is_string())
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(started["backend"], "sqlite");
    assert!(
        started["events"].as_str().unwrap().starts_with("file "),
        "{started}"
    );
    let listen: std::net::SocketAddr = started["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("localhost was resolved to an address: {e}: {started}"));
    assert!(listen.ip().is_loopback(), "{started}");
    assert_eq!(listen.port(), port, "{started}");
}

#[cfg(unix)]
#[tokio::test]
async fn every_file_the_server_creates_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // no admin token set: it is generated and stored beside the database
    let mut command = shop(dir.path());
    command.env("SHOP_OUTBOX_INTERVAL_MS", "20");
    let server = Server::start(command, dir.path()).await;
    let admin = std::fs::read_to_string(dir.path().join("shop.db.admin-token")).unwrap();
    let (user, token) = user_with(&server.base, 10_000).await;
    paid_order(&server.base, admin.trim(), user, &token).await;
    let events = dir.path().join("shop.events.jsonl");
    for _ in 0..200 {
        if std::fs::metadata(&events).is_ok_and(|m| m.len() > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in [
        "shop.db",
        "shop.db-wal",
        "shop.db-shm",
        "shop.db.admin-token",
        "shop.events.jsonl",
    ] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
}

/// The migrations this build has, per backend.
fn migration_files(backend: &str) -> usize {
    std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend),
    )
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".sql")
    })
    .count()
}

/// `shop migrate --status`: (version, status) per line.
async fn migration_status(dir: &Path, url: &str) -> Vec<(String, String)> {
    let mut command = shop(dir);
    command
        .args(["migrate", "--status"])
        .env("SHOP_DATABASE_URL", url);
    let out = finish(command).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap().to_string(),
                words.next().unwrap().to_string(),
            )
        })
        .collect()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn migrate_runs_the_migrations_and_status_lists_them(#[case] backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg, files) = match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.path().join("shop.db").display());
            // no database yet: status says so and creates nothing
            let mut command = shop(dir.path());
            command.args(["migrate", "--status"]);
            let out = finish(command).await;
            assert!(!out.status.success());
            assert!(
                text(&out.stderr).contains("no database"),
                "{}",
                text(&out.stderr)
            );
            assert!(files_in(dir.path()).is_empty());
            (url, None, migration_files("sqlite"))
        }
        Backend::Postgres => {
            let pg = EmptyPostgres::create().await;
            let url = pg.url.clone();
            let status = migration_status(dir.path(), &url).await;
            assert_eq!(status.len(), migration_files("postgres"), "{status:?}");
            assert!(status.iter().all(|(_, s)| s == "pending"), "{status:?}");
            assert_eq!(postgres_tables(&url).await, 0, "status changes nothing");
            (url, Some(pg), migration_files("postgres"))
        }
    };
    let mut command = shop(dir.path());
    command.arg("migrate").env("SHOP_DATABASE_URL", &url);
    let out = finish(command).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("applied {files} migration")),
        "{}",
        text(&out.stdout)
    );
    let status = migration_status(dir.path(), &url).await;
    assert_eq!(status.len(), files, "{status:?}");
    assert!(status.iter().all(|(_, s)| s == "applied"), "{status:?}");
    assert_eq!(status[0].0, "0001");
    // again: nothing to do
    let mut command = shop(dir.path());
    command.arg("migrate").env("SHOP_DATABASE_URL", &url);
    let out = finish(command).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("applied 0 migration"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_server_writes_is_whole_and_consistent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command.env("SHOP_ADMIN_TOKEN", ADMIN_TOKEN);
    let server = Server::start(command, dir.path()).await;
    let (user, token) = user_with(&server.base, 1_000).await;
    paid_order(&server.base, ADMIN_TOKEN, user, &token).await;
    // charges keep coming while the copy is taken
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (base, token, writing) = (server.base.clone(), token.clone(), writing.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut charged = 0;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                let res = client
                    .post(format!("{base}/api/v1/users/{user}/balance/charge"))
                    .bearer_auth(&token)
                    .json(&json!({"amount": 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                charged += 1;
            }
            charged
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copy = dir.path().join("copy.db");
    let mut command = shop(dir.path());
    command.arg("backup").arg(&copy);
    let out = finish(command).await;
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let charged = writer.await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(charged > 0);
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the copy is private too");

    // the copy opens on its own and holds the data, consistent at one moment
    let backup = shop::db::Db::open(
        &format!("sqlite://{}", copy.display()),
        1,
        Duration::from_secs(5),
        false,
    )
    .await
    .unwrap();
    let one = |sql: &'static str| {
        let backup = backup.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(backup.read()).await.unwrap();
            n
        }
    };
    assert_eq!(one("select count(*) from users").await, 1);
    assert_eq!(
        one("select count(*) from orders where status = 'PAID'").await,
        1
    );
    let balance = one("select balance from users").await;
    let ledger = one("select sum(amount) from balance_ledger").await;
    assert_eq!(balance, ledger, "balance equals its ledger in the copy");
    assert!(balance >= 0);
    for (what, n) in shop::invariants::violations(&backup).await.unwrap() {
        assert_eq!(n, 0, "invariant broken in the copy: {what}");
    }
    let (check,): (String,) = sqlx::query_as("pragma integrity_check")
        .fetch_one(backup.read())
        .await
        .unwrap();
    assert_eq!(check, "ok");
    backup.close().await;

    // a copy never overwrites anything
    let mut command = shop(dir.path());
    command.arg("backup").arg(&copy);
    let out = finish(command).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn backup_refuses_postgres_and_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command.args(["backup", "copy.db"]).env(
        "SHOP_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/shop",
    );
    let out = finish(command).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pg_dump"),
        "{}",
        text(&out.stderr)
    );
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn a_server_with_nats_up_reports_the_sink_ok() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command.env("SHOP_NATS_URL", &nats.url);
    let server = Server::start(command, dir.path()).await;
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let (_, body) = send(client.get(format!("{}/health/ready", server.base))).await;
        if body["status"] == "ok" {
            assert_eq!(body["checks"]["eventSink"]["kind"], "nats");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never ready with NATS up:\n{}", server.log());
}

/// The README's shell blocks of the section `heading` that talk to the server.
fn readme_blocks(heading: &str) -> String {
    let readme = include_str!("../../../../README.md");
    let section = &readme[readme.find(heading).expect("the README's section")..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| &b[..b.find("```").expect("a closed block")])
        .filter(|b| b.contains("localhost:8080"))
        .collect()
}

/// Runs `block` with bash as it stands, but for the server's port, from `dir`: every
/// curl must succeed (`--fail-with-body`), and so must every other command.
async fn run_readme_block(block: &str, port: u16, dir: &Path) -> Output {
    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl --fail-with-body \"$@\"; echo; }}\n{}",
        block.replace("localhost:8080", &format!("localhost:{port}"))
    );
    finish({
        let mut bash = Command::new("bash");
        bash.arg("-c").arg(&script).current_dir(dir);
        bash
    })
    .await
}

/// The shell blocks of the README's "Run it", run by bash as they stand (with the
/// server's port) against a fresh server with the demo data, from the server's
/// directory: every request must succeed (curl `--fail-with-body`), so the README
/// cannot rot.
#[tokio::test]
async fn the_readme_examples_run_against_a_fresh_server() {
    let block = readme_blocks("## Run it");
    assert!(block.contains("/sessions"), "both blocks: {block}");

    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command.env("SHOP_DEMO_DATA", "true");
    let server = Server::start(command, dir.path()).await;
    let out = run_readme_block(&block, server.port, dir.path()).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the README's block failed:\n{stdout}\n{}\nserver:\n{}",
        text(&out.stderr),
        server.log()
    );
    assert_eq!(
        stdout.matches(r#""status":"PAID""#).count(),
        1,
        "the direct order, paid:\n{stdout}"
    );
    assert_eq!(
        stdout.matches(r#""status":"DELIVERED""#).count(),
        2,
        "the checkout's order delivered (the answer and the read):\n{stdout}"
    );
    assert!(
        stdout.contains(r#""status":"SUCCEEDED""#),
        "its payment: {stdout}"
    );
    assert!(
        stdout.contains(r#""options":{"colour":"black","size":"M"}"#),
        "{stdout}"
    );
    assert!(stdout.contains("refreshToken"), "the login: {stdout}");
}

/// The README's NATS example, as it stands: against a server publishing to NATS
/// JetStream and the reference consumer (`shop consume-events`) writing into
/// `consumer.db`, a paid order's event is in the consumer's table.
#[tokio::test]
async fn the_readme_nats_example_reaches_the_consumer() {
    let block = readme_blocks("## Data-platform events");
    assert!(block.contains("sqlite3 consumer.db"), "{block}");

    let nats = crate::helpers::Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command
        .env("SHOP_DEMO_DATA", "true")
        .env("SHOP_NATS_URL", &nats.url);
    let server = Server::start(command, dir.path()).await;
    let mut consumer = shop(dir.path());
    consumer
        .arg("consume-events")
        .env("SHOP_NATS_URL", &nats.url)
        .env("SHOP_CONSUMER_DATABASE_URL", "sqlite://consumer.db")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("consumer.log")).unwrap());
    let consumer = KillOnDrop(consumer.spawn().expect("start the consumer"));

    let out = run_readme_block(&block, server.port, dir.path()).await;
    let stdout = text(&out.stdout);
    let consumer_log = std::fs::read_to_string(dir.path().join("consumer.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the README's block failed:\n{stdout}\n{}\nserver:\n{}\nconsumer:\n{consumer_log}",
        text(&out.stderr),
        server.log()
    );
    assert!(stdout.contains(r#""status":"PAID""#), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("|order.paid|"))
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "the paid order's event in the consumer's table:\n{stdout}\nconsumer:\n{consumer_log}"
    );
    drop(consumer);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stand-in OpenTelemetry collector: answers every OTLP/HTTP export with 200 and
/// an empty (protobuf) body, and hands each request's path and body to the test.
async fn otlp_receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // One request per connection is enough for the test: read the
                    // head, then the body its content-length announces.
                    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let body_start = head_end + 4;
                    while buf.len() < body_start + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let body = buf[body_start..body_start + length].to_vec();
                    let _ = tx.send((path, body));
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            });
        }
    });
    (port, rx)
}

/// With SHOP_OTLP_ENDPOINT, each request is a span sent over OTLP/HTTP to
/// `<endpoint>/v1/traces`, named by method and route, from service `shop`; the
/// spans still buffered are sent when the server stops.
#[tokio::test]
async fn request_spans_arrive_at_an_otlp_collector() {
    let (port, mut received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = shop(dir.path());
    command.env("SHOP_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"));
    let server = Server::start(command, dir.path()).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{}/api/v1/products/popular", server.base))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let log = server.log();
    assert!(server.stop().await.success(), "{log}");

    let mut bodies = Vec::new();
    while let Ok(Some((path, body))) =
        tokio::time::timeout(Duration::from_secs(15), received.recv()).await
    {
        assert_eq!(path, "/v1/traces");
        bodies.extend(body);
        let has = |needle: &[u8]| bodies.windows(needle.len()).any(|w| w == needle);
        if has(b"GET /api/v1/products/popular") && has(b"trace-me-1") && has(b"shop") {
            return;
        }
    }
    panic!(
        "no span of the request arrived ({} bytes received)",
        bodies.len()
    );
}
