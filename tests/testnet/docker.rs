//! What the scenarios do to containers and networks, through the `docker` CLI.
//!
//! Containers are found by the labels compose and swarm put on them
//! (`com.docker.compose.project` / `.service`, `com.docker.swarm.service.name`), never by
//! name: compose v1 names them `project_service_1` and v2 `project-service-1`, and labels
//! are the same for both. Compose itself is only run by the script (`recreate` below asks
//! it), which decides once whether that is `docker compose` or `docker-compose`.

use std::time::Duration;

use tokio::process::Command;

use crate::net::{Mode, Testnet};

/// Longer than any docker command here takes (a `docker stop` waits 10 s for its node);
/// a docker engine that hangs fails the scenario instead of stalling it.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `docker ARGS` with `env` added; its stdout, or why it failed.
pub async fn run_with_env(args: &[String], env: (&str, &str)) -> Result<String, String> {
    let mut cmd = Command::new("docker");
    cmd.args(args).env(env.0, env.1);
    output(cmd, "docker", args, DOCKER_TIMEOUT).await
}

/// Runs `docker ARGS`; its stdout, or why it failed.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    output(cmd, "docker", args, DOCKER_TIMEOUT).await
}

async fn output(
    mut cmd: Command,
    program: &str,
    args: &[impl AsRef<str>],
    limit: Duration,
) -> Result<String, String> {
    let line = || {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        format!("{program} {}", args.join(" "))
    };
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("`{}`: {e}", line())),
        Err(_) => return Err(format!("`{}` did not finish within {limit:?}", line())),
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{}` failed ({}): {}",
            line(),
            out.status,
            err.trim()
        ))
    }
}

/// The first line of `docker ps`-style output: the newest match.
fn first_id(out: &str) -> Option<String> {
    out.lines().next().map(str::to_string)
}

/// The running task container of `node`'s swarm service on this host, if it runs here.
pub async fn swarm_task(project: &str, node: &str) -> Result<Option<String>, String> {
    let label = format!("label=com.docker.swarm.service.name={project}_{node}");
    let out = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &label,
        "--filter",
        "status=running",
    ])
    .await?;
    Ok(first_id(&out))
}

/// A task container's address on `docker_gwbridge`, where the host reaches it.
pub async fn gwbridge_ip(container: &str) -> Result<String, String> {
    let out = docker(&[
        "network",
        "inspect",
        "docker_gwbridge",
        "--format",
        "{{json .Containers}}",
    ])
    .await?;
    let endpoints: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("docker_gwbridge endpoints: {e}: {out}"))?;
    endpoints[container]["IPv4Address"]
        .as_str()
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| format!("container {container} has no address on docker_gwbridge"))
}

impl Testnet {
    /// `node`'s compose container (running or not).
    async fn container(&self, node: &str) -> Result<String, String> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={node}");
        let out = docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &project,
            "--filter",
            &service,
        ])
        .await?;
        first_id(&out).ok_or_else(|| format!("no container of {node} in project {}", self.project))
    }

    /// SIGKILLs `node`. Swarm: its task container if it runs on this host, else its
    /// service scaled to 0 (a stop, on the host that runs it).
    pub async fn kill(&self, node: &str) -> Result<(), String> {
        self.forget(node);
        match self.mode {
            Mode::Compose => docker(&["kill", &self.container(node).await?])
                .await
                .map(drop),
            Mode::Swarm => match swarm_task(&self.project, node).await? {
                Some(task) => docker(&["kill", &task]).await.map(drop),
                None => {
                    let spec = format!("{}_{node}=0", self.project);
                    docker(&["service", "scale", "--detach", &spec])
                        .await
                        .map(drop)
                }
            },
        }
    }

    /// Starts `node` again after `kill`. Swarm: a new task (the stack's restart policy
    /// is none), which the scheduler may place on another host.
    pub async fn start(&self, node: &str) -> Result<(), String> {
        self.forget(node);
        match self.mode {
            Mode::Compose => docker(&["start", &self.container(node).await?])
                .await
                .map(drop),
            Mode::Swarm => {
                let service = format!("{}_{node}", self.project);
                docker(&[
                    "service",
                    "update",
                    "--detach",
                    "--force",
                    "--replicas",
                    "1",
                    &service,
                ])
                .await
                .map(drop)
            }
        }
    }

    /// Stops `node` (SIGTERM, then SIGKILL after 10 s). Compose only.
    pub async fn stop(&self, node: &str) -> Result<(), String> {
        docker(&["stop", &self.container(node).await?])
            .await
            .map(drop)
    }

    /// The compose network every node is on: the network `demls` of the project. Compose
    /// v1 labels it with that key; the name `project_demls` is the same in v1 and v2, so
    /// either identifies it.
    pub async fn shared_network(&self) -> Result<String, String> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let format = r#"{{.ID}} {{.Name}} {{.Label "com.docker.compose.network"}}"#;
        let out = docker(&[
            "network",
            "ls",
            "--no-trunc",
            "--filter",
            &project,
            "--format",
            format,
        ])
        .await?;
        let name = format!("{}_demls", self.project);
        out.lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((words.next()?, words.next()?, words.next().unwrap_or("")))
            })
            .find(|(_, n, key)| *key == "demls" || *n == name)
            .map(|(id, _, _)| id.to_string())
            .ok_or_else(|| format!("no network demls in project {}: {out:?}", self.project))
    }

    /// A network of its own for a cut-off part of the testnet (`project_half_b`; the
    /// script's `down` removes it), made if it does not exist yet.
    pub async fn side_network(&self, name: &str) -> Result<String, String> {
        let name = format!("{}_{name}", self.project);
        if docker(&["network", "inspect", &name]).await.is_err() {
            docker(&["network", "create", &name]).await?;
        }
        Ok(name)
    }

    /// Takes `node` off `network`; returns its address there, to come back at.
    pub async fn disconnect(&self, node: &str, network: &str) -> Result<String, String> {
        let container = self.container(node).await?;
        let ip = self.address_on(&container, network).await?;
        docker(&["network", "disconnect", network, &container]).await?;
        Ok(ip)
    }

    /// Puts `node` on `network` under its own name, at `ip` if given.
    pub async fn connect(&self, node: &str, network: &str, ip: Option<&str>) -> Result<(), String> {
        let container = self.container(node).await?;
        let mut args = vec!["network", "connect", "--alias", node];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        args.extend([network, &container]);
        docker(&args).await.map(drop)
    }

    async fn address_on(&self, container: &str, network: &str) -> Result<String, String> {
        let out = docker(&[
            "inspect",
            "--format",
            "{{json .NetworkSettings.Networks}}",
            container,
        ])
        .await?;
        let networks: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| format!("networks of {container}: {e}: {out}"))?;
        networks
            .as_object()
            .and_then(|all| {
                all.iter()
                    .find(|(name, n)| *name == network || n["NetworkID"] == network)
            })
            .and_then(|(_, n)| n["IPAddress"].as_str())
            .filter(|ip| !ip.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("container {container} has no address on network {network}"))
    }

    /// Has the script write the compose file again with `boot_mode` (its `BOOT_MODE`)
    /// and recreate `nodes` from it, their volumes kept (`compose up -d --no-deps`).
    pub async fn recreate(&self, boot_mode: &str, nodes: &[String]) -> Result<(), String> {
        let mut cmd = Command::new(&self.script);
        cmd.arg("recreate").args(nodes).env("BOOT_MODE", boot_mode);
        let mut args = vec!["recreate".to_string()];
        args.extend(nodes.iter().cloned());
        let program = self.script.display().to_string();
        output(cmd, &program, &args, 2 * DOCKER_TIMEOUT)
            .await
            .map(drop)
    }
}
