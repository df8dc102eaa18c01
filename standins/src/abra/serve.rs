//! The process that stands in for one service's container: a static file server on
//! 127.0.0.1 serving the service's volume, as the custom-html recipe's nginx serves
//! `/usr/share/nginx/html`. Started by `abra app deploy` as the hidden mode
//! `abra __standin-serve …`, detached, and stopped by `abra app undeploy`.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::http::{Response, Server};

/// Hidden subcommand name; not an abra command.
pub const MODE: &str = "__standin-serve";

struct Opts {
    root: Option<PathBuf>,
    port_file: PathBuf,
    prefer_port: u16,
    server_header: String,
    watch_dir: PathBuf,
    no_listen: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut p = pico_args::Arguments::from_vec(args.iter().map(Into::into).collect());
    let o = Opts {
        root: p.opt_value_from_str("--root")?,
        port_file: p.value_from_str("--port-file")?,
        prefer_port: p.opt_value_from_str("--prefer-port")?.unwrap_or(0),
        server_header: p
            .opt_value_from_str("--server-header")?
            .unwrap_or_else(|| "standin".to_owned()),
        watch_dir: p.value_from_str("--watch-dir")?,
        no_listen: p.contains("--no-listen"),
    };
    let rest = p.finish();
    if !rest.is_empty() {
        anyhow::bail!("unexpected arguments: {rest:?}");
    }
    Ok(o)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain",
        // nginx's `default_type application/octet-stream` for unknown extensions.
        _ => "application/octet-stream",
    }
}

fn answer(root: Option<&Path>, server: &str, req_path: &str) -> Response {
    let not_found = |status: u16, reason: &str| {
        let body =
            format!("<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n");
        Response::new(status)
            .header("Server", server)
            .header("Content-Type", "text/html")
            .body(body.into_bytes())
    };
    let Some(root) = root else {
        return Response::text(200, &format!("stand-in service ({server})\n"))
            .header("Server", server);
    };
    let rel = Path::new(req_path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return not_found(400, "Bad Request");
    }
    let mut file = root.join(rel);
    if file.is_dir() {
        file = file.join("index.html");
    }
    match std::fs::read(&file) {
        Ok(body) => Response::new(200)
            .header("Server", server)
            .header("Content-Type", content_type(&file))
            .body(body),
        Err(_) => not_found(404, "Not Found"),
    }
}

/// Runs until killed, or until the swarm dir it belongs to disappears (a test's temp dir
/// removed), so a forgotten service never outlives its swarm for long.
pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let port = if o.no_listen {
        // Never converges: the port is reserved on paper but nothing answers there.
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("probing a free port")?;
        l.local_addr()?.port()
    } else {
        0
    };
    let server = if o.no_listen {
        None
    } else {
        let root = o.root.clone();
        let header = o.server_header.clone();
        let handler: crate::http::Handler =
            Arc::new(move |req| answer(root.as_deref(), &header, &req.path));
        let s = Server::start(o.prefer_port, handler.clone())
            .or_else(|_| Server::start(0, handler))
            .context("binding the service port")?;
        Some(s)
    };
    let port = server.as_ref().map_or(port, |s| s.addr().port());
    let tmp = o.port_file.with_extension("tmp");
    std::fs::write(&tmp, port.to_string()).context("writing port file")?;
    std::fs::rename(&tmp, &o.port_file).context("publishing port file")?;
    while o.watch_dir.is_dir() {
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(server);
    Ok(())
}
