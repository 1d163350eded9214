"""The command tree. ``main(args, env)`` runs one command and returns its exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from dockyard import __version__
from dockyard.cli.client import ApiError, Client
from dockyard.cli.environment import Environment, ExitCode, normalized_url
from dockyard.cli.guessing import apps_of_remotes, did_you_mean, git_remote_urls
from dockyard.cli.output import echo, output_option, print_json, short_time, table
from dockyard.domain.configuration import ConfigChange
from dockyard.domain.errors import InvalidInput


@dataclass
class Session:
    env: Environment
    _client: Client | None = field(default=None, init=False)
    app: str | None = None  # the command's --app, to suggest a close one if it has none

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.env.api_url(), self.env.api_token())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_session = click.make_pass_decorator(Session)


def _app_of_here(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """--app, else DOCKYARD_APP, else the app whose git remote on this server is here."""
    session = ctx.find_object(Session)
    if not value and session is not None:
        apps = apps_of_remotes(git_remote_urls(), session.env.api_url())
        if len(apps) > 1:
            raise click.UsageError(
                f"this directory's git remotes point at several apps ({', '.join(apps)}): "
                "pick one with --app"
            )
        value = apps[0] if apps else None
    if not value:
        raise click.MissingParameter(ctx=ctx, param=param)
    if session is not None:
        session.app = value
    return value


app_option = click.option(
    "--app",
    "-a",
    "app",
    envvar="DOCKYARD_APP",
    callback=_app_of_here,
    help="The app's handle (default: DOCKYARD_APP, or the app this directory's git remote "
    "on this server is for).",
)
detach_option = click.option(
    "--detach", is_flag=True, help="Print the operation's id and return without waiting."
)
reveal_option = click.option("--reveal", is_flag=True, help="Show secret values in clear.")


class OperationFailed(Exception):
    pass


class Commands(click.Group):
    """A mistyped command is answered with the closest one."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            hint = did_you_mean(name, self.list_commands(ctx))
            raise click.UsageError(f"no such command {name!r}{hint}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dockyard")
def cli() -> None:
    """Dockyard: deploy apps from git pushes and private registry images.

    \b
    Start with:
      dockyard login --url http://127.0.0.1:8800 --token "$(cat DATA_DIR/admin-token)"
      dockyard apps:create web
      git push http://127.0.0.1:8800/git/web.git main    # or: dockyard deploy --docker-image
    """


# --- session ---


@cli.command()
@click.option("--url", required=True, help="The server's URL, e.g. http://127.0.0.1:8800.")
@click.option("--token", required=True, help="Your API token.")
@pass_session
def login(session: Session, url: str, token: str) -> None:
    """Check a token against a server and save both for later commands.

    \b
    Example:
      dockyard login --url 127.0.0.1:8800 --token "$(cat .dockyard/admin-token)"
    """
    url = normalized_url(url)
    client = Client(url, token)
    try:
        me = client.request("GET", "/me")
    finally:
        client.close()
    path = session.env.save_login(url, token)
    echo(session.env, f"Logged in to {url} as {me['name']} (saved in {path})")


# --- users ---


@cli.command("users")
@output_option
@pass_session
def users_list(session: Session, output: str) -> None:
    """List users (admins only)."""
    users = session.client.request("GET", "/users")
    if output == "json":
        print_json(session.env, users)
        return
    rows = [[u["name"], "yes" if u["admin"] else "no", short_time(u["created_at"])] for u in users]
    table(session.env, ["name", "admin", "created"], rows)


@cli.command("users:create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@output_option
@pass_session
def users_create(session: Session, name: str, admin: bool, output: str) -> None:
    """Create a user and print its API token (shown only this once)."""
    user = session.client.request("POST", "/users", json={"name": name, "admin": admin})
    if output == "json":
        print_json(session.env, user)
        return
    echo(session.env, f"Created user {user['name']}. Its API token (shown only now):", err=True)
    echo(session.env, user["token"])


# --- apps ---


@cli.command("apps")
@output_option
@pass_session
def apps_list(session: Session, output: str) -> None:
    """List the apps you can see."""
    apps = session.client.request("GET", "/apps")
    if output == "json":
        print_json(session.env, apps)
        return
    rows = [[a["handle"], a["config_version"], short_time(a["created_at"])] for a in apps]
    table(session.env, ["handle", "config version", "created"], rows)


@cli.command("apps:create")
@click.argument("handle")
@output_option
@pass_session
def apps_create(session: Session, handle: str, output: str) -> None:
    """Create an app and print its git remote."""
    app = session.client.request("POST", "/apps", json={"handle": handle})
    if output == "json":
        print_json(session.env, app)
        return
    echo(session.env, f"App {app['handle']} created. Git remote:", err=True)
    echo(session.env, app["git_remote"])


@cli.command("apps:show")
@app_option
@output_option
@pass_session
def apps_show(session: Session, app: str, output: str) -> None:
    """Show an app."""
    shown = session.client.request("GET", f"/apps/{app}")
    if output == "json":
        print_json(session.env, shown)
        return
    release = shown["release"]
    for label, value in (
        ("Handle", shown["handle"]),
        ("URL", shown["url"] if release else "- (not deployed yet)"),
        ("Git remote", shown["git_remote"]),
        ("Release", f"{release['number']} {release['image']}" if release else "-"),
        ("Configuration", f"version {shown['config_version']}"),
        ("Registries", ", ".join(shown["registry_hosts"]) or "-"),
        ("Members", ", ".join(shown["members"]) or "-"),
        ("Created", short_time(shown["created_at"])),
    ):
        echo(session.env, f"{label + ':':<15}{value}")
    if shown["containers"]:
        echo(session.env)
        rows = [
            [
                f"{c['service']}.{c['index'] + 1}",
                c["state"],
                c["port"],
                c["release_number"] or "-",
                c["id"],
            ]
            for c in shown["containers"]
        ]
        table(session.env, ["container", "state", "port", "release", "id"], rows)


@cli.command("apps:deprovision")
@app_option
@click.option(
    "--confirm",
    metavar="HANDLE",
    help="The app's handle again: needed when not on a terminal (on one, you are asked).",
)
@detach_option
@output_option
@pass_session
def apps_deprovision(
    session: Session, app: str, confirm: str | None, detach: bool, output: str
) -> None:
    """Delete an app and everything it has, at once; it cannot be undone.

    Gone: its containers and its route, its custom domains and their
    certificates, every version of its configuration, its releases and the
    images built for it, the registry credentials stored for it, its git
    repository, its network and its grants. Images in registries are not
    touched.

    \b
    Example:
      dockyard apps:deprovision --app web --confirm web
    """
    if confirm is None:
        if not session.env.stdin.isatty():
            raise click.UsageError(
                f"this deletes {app} and everything it has: pass --confirm {app}, "
                "or run it on a terminal to be asked"
            )
        session.env.stderr.write(
            f"This deletes {app} and everything it has. Type {app} to confirm: "
        )
        session.env.stderr.flush()
        confirm = session.env.stdin.readline().strip()
    if confirm != app:
        raise InvalidInput(f"{confirm!r} is not the app's handle {app!r}: nothing was deleted")
    operation = session.client.request("DELETE", f"/apps/{app}")
    _await_operation(session, operation, detach=detach, output=output)


@cli.command("apps:grant")
@app_option
@click.argument("user")
@pass_session
def apps_grant(session: Session, app: str, user: str) -> None:
    """Let USER see and change the app (admins only)."""
    session.client.request("POST", f"/apps/{app}/grants", json={"user": user})
    echo(session.env, f"{user} can now use {app}")


@cli.command("apps:revoke")
@app_option
@click.argument("user")
@pass_session
def apps_revoke(session: Session, app: str, user: str) -> None:
    """Take the app away from USER (admins only)."""
    session.client.request("DELETE", f"/apps/{app}/grants/{user}")
    echo(session.env, f"{user} can no longer use {app}")


# --- configuration ---


@cli.command("config")
@app_option
@reveal_option
@output_option
@pass_session
def config_show(session: Session, app: str, reveal: bool, output: str) -> None:
    """Print the app's configuration as KEY=VALUE lines."""
    config = session.client.request("GET", f"/apps/{app}/configuration", params={"reveal": reveal})
    if output == "json":
        print_json(session.env, config)
        return
    for key in sorted(config["values"]):
        echo(session.env, f"{key}={config['values'][key]}")


@cli.command("config:get")
@app_option
@click.argument("key")
@reveal_option
@output_option
@pass_session
def config_get(session: Session, app: str, key: str, reveal: bool, output: str) -> None:
    """Print one configuration value."""
    value = session.client.request(
        "GET", f"/apps/{app}/configuration/{key}", params={"reveal": reveal}
    )
    if output == "json":
        print_json(session.env, value)
        return
    echo(session.env, value["value"])


def _change(session: Session, app: str, body: dict[str, Any], detach: bool, output: str) -> None:
    operation = session.client.request("POST", f"/apps/{app}/configuration", json=body)
    _await_operation(session, operation, detach=detach, output=output)


def _parse_assignments(arguments: Sequence[str]) -> dict[str, Any]:
    """Check ``K=V`` arguments before sending them; the server checks them again."""
    change = ConfigChange.from_arguments(arguments)
    return {"set": dict(change.set), "unset": sorted(change.unset)}


@cli.command("config:set")
@app_option
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@detach_option
@output_option
@pass_session
def config_set(
    session: Session, app: str, assignments: tuple[str, ...], detach: bool, output: str
) -> None:
    """Set configuration values (KEY= unsets KEY); a running app restarts.

    \b
    Example:
      dockyard config:set --app web DATABASE_URL=postgres://db/web WORKERS=4
    """
    _change(session, app, _parse_assignments(assignments), detach, output)


@cli.command("config:unset")
@app_option
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@detach_option
@output_option
@pass_session
def config_unset(
    session: Session, app: str, keys: tuple[str, ...], detach: bool, output: str
) -> None:
    """Remove configuration keys; a running app restarts."""
    _change(session, app, {"set": {}, "unset": list(keys)}, detach, output)


cli.add_command(config_set, "config:add")
cli.add_command(config_unset, "config:rm")


# --- deploys ---


@cli.command("deploy")
@app_option
@click.option("--docker-image", help="HOST/REPOSITORY:TAG or HOST/REPOSITORY@sha256:DIGEST.")
@click.option(
    "--git-commitish",
    help="A branch, tag or commit pushed before: build it and deploy it.",
)
@click.option("--private-registry-username", help="User name for the image's registry.")
@click.option(
    "--private-registry-password",
    help="Password or token for the image's registry; kept (encrypted) for later deploys.",
)
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@detach_option
@output_option
@pass_session
def deploy(
    session: Session,
    app: str,
    docker_image: str | None,
    git_commitish: str | None,
    private_registry_username: str | None,
    private_registry_password: str | None,
    assignments: tuple[str, ...],
    detach: bool,
    output: str,
) -> None:
    """Deploy an image or a pushed commit, with configuration changes, as one operation.

    Without --docker-image or --git-commitish, the app's current image is
    deployed again. KEY=VALUE arguments change the configuration only if the
    deploy succeeds.

    \b
    Examples:
      dockyard deploy --app web --docker-image registry.example.com/web:v2 \\
          --private-registry-username ci --private-registry-password "$TOKEN"
      dockyard deploy --app web --git-commitish v1.4 FEATURE_X=on
    """
    body = {
        "docker_image": docker_image,
        "git_commitish": git_commitish,
        "private_registry_username": private_registry_username,
        "private_registry_password": private_registry_password,
        **_parse_assignments(assignments),
    }
    operation = session.client.request("POST", f"/apps/{app}/deploy", json=body)
    _await_operation(session, operation, detach=detach, output=output)


@cli.command("apps:scale")
@app_option
@click.argument("service")
@click.option("--container-count", type=int, required=True, help="How many containers to run.")
@detach_option
@output_option
@pass_session
def apps_scale(
    session: Session, app: str, service: str, container_count: int, detach: bool, output: str
) -> None:
    """Run SERVICE in --container-count containers, each on its own PORT.

    Without a Procfile the app's one service is called cmd.

    \b
    Example:
      dockyard apps:scale --app web cmd --container-count 3
    """
    body = {"service": service, "container_count": container_count}
    operation = session.client.request("POST", f"/apps/{app}/scale", json=body)
    _await_operation(session, operation, detach=detach, output=output)


@cli.command("logs")
@app_option
@click.option("--tail", type=int, default=100, show_default=True, help="Lines to show first.")
@click.option("--follow/--no-follow", default=True, help="Keep streaming new output.")
@click.option("--timestamps", "-t", is_flag=True, help="Start each line with its time (UTC).")
@pass_session
def logs(session: Session, app: str, tail: int, follow: bool, timestamps: bool) -> None:
    """Stream the output of the app's containers, merged in the order of their times.

    \b
    Example:
      dockyard logs --app web --tail 20 --no-follow --timestamps
    """
    params = {"tail": tail, "follow": follow, "timestamps": timestamps}
    for line in session.client.lines(f"/apps/{app}/logs", params):
        echo(session.env, line)


@cli.command("nodes")
@output_option
@pass_session
def nodes(session: Session, output: str) -> None:
    """List the hosts apps run on, with your apps' tasks on each."""
    found = session.client.request("GET", "/nodes")
    if output == "json":
        print_json(session.env, found)
        return
    rows = [
        [n["hostname"], n["address"], n["state"], n["availability"], ", ".join(n["tasks"]) or "-"]
        for n in found
    ]
    table(session.env, ["node", "address", "state", "availability", "tasks"], rows)


@cli.command("restart")
@app_option
@detach_option
@output_option
@pass_session
def restart(session: Session, app: str, detach: bool, output: str) -> None:
    """Restart the app's containers (a new release of the same image)."""
    operation = session.client.request("POST", f"/apps/{app}/restart")
    _await_operation(session, operation, detach=detach, output=output)


# --- releases ---


def _short_digest(digest: str) -> str:
    return digest[: len("sha256:") + 12]


@cli.command("releases")
@app_option
@output_option
@pass_session
def releases_list(session: Session, app: str, output: str) -> None:
    """List the app's releases, newest first; * marks the current one."""
    found = session.client.request("GET", f"/apps/{app}/releases")
    if output == "json":
        print_json(session.env, found)
        return
    rows = [
        [
            ("* " if r["current"] else "  ") + str(r["number"]),
            r["source"],
            _short_digest(r["digest"]),
            r["config_version"],
            r["kind"],
            r["created_by"] or "-",
            short_time(r["created_at"]),
            "current" if r["current"] else r["status"],
        ]
        for r in found
    ]
    headers = ["release", "source", "digest", "config", "made by", "who", "when", "status"]
    table(session.env, headers, rows)


@cli.command("releases:show")
@app_option
@click.argument("number", type=int)
@reveal_option
@output_option
@pass_session
def releases_show(session: Session, app: str, number: int, reveal: bool, output: str) -> None:
    """Show release NUMBER with its configuration keys (values masked unless --reveal)."""
    if number < 1:
        raise InvalidInput(f"release numbers start at 1, not {number}")
    shown = session.client.request(
        "GET", f"/apps/{app}/releases/{number}", params={"reveal": reveal}
    )
    if output == "json":
        print_json(session.env, shown)
        return
    for label, value in (
        ("Release", str(shown["number"]) + (" (current)" if shown["current"] else "")),
        ("Source", shown["source"]),
        ("Image", shown["image"]),
        ("Digest", shown["digest"]),
        ("Configuration", f"version {shown['config_version']}"),
        ("Made by", shown["kind"]),
        ("Who", shown["created_by"] or "-"),
        ("When", short_time(shown["created_at"])),
        ("Status", shown["status"]),
        ("Services", ", ".join(shown["services"]) or "-"),
    ):
        echo(session.env, f"{label + ':':<15}{value}")
    configuration = shown["configuration"]
    echo(session.env)
    if not configuration:
        echo(session.env, "No configuration")
    for key in sorted(configuration):
        echo(session.env, f"{key}={configuration[key]}")


@cli.command("rollback")
@app_option
@click.option(
    "--release",
    "number",
    type=int,
    help="The release to bring back (default: the one before the current release).",
)
@detach_option
@output_option
@pass_session
def rollback(session: Session, app: str, number: int | None, detach: bool, output: str) -> None:
    """Bring back a release's image and configuration together, as a new release."""
    if number is not None and number < 1:
        raise InvalidInput(f"release numbers start at 1, not {number}")
    operation = session.client.request("POST", f"/apps/{app}/releases", json={"release": number})
    _await_operation(session, operation, detach=detach, output=output)


# --- registry credential sources ---

scope_option = click.option(
    "--app",
    "-a",
    "app",
    envvar="DOCKYARD_APP",
    help="The app's handle; without it, the source serves every app (admins only).",
)


def _read_stdin(session: Session, what: str) -> str:
    value = session.env.stdin.read().rstrip("\r\n")
    if not value:
        raise InvalidInput(f"{what}: standard input was empty")
    return value


def _expiry(value: str | None) -> str:
    return short_time(value) if value else "-"


@cli.command("registries")
@scope_option
@output_option
@pass_session
def registries_list(session: Session, app: str | None, output: str) -> None:
    """List registry credential sources: the app's, or the global ones."""
    found = session.client.request("GET", "/registries", params={"app": app} if app else None)
    if output == "json":
        print_json(session.env, found)
        return
    rows = [
        [
            s["host"],
            s["kind"] + (" (deploy)" if s["stored_by_deploy"] else ""),
            s["scope"] if s["scope"] == "global" else f"app {s['app']}",
            _expiry(s["last_fetched_at"]),
            _expiry(s["expires_at"]),
            s["last_error"] or "-",
        ]
        for s in found
    ]
    table(session.env, ["host", "kind", "scope", "last fetched", "expires", "last error"], rows)


def _print_fetch(session: Session, answer: dict[str, Any]) -> None:
    if answer["error"]:
        echo(session.env, f"{answer['source']['host']}: {answer['error']}")
        return
    echo(session.env, answer["fetched"][:1].upper() + answer["fetched"][1:])
    if answer.get("checked"):
        echo(session.env, answer["checked"][:1].upper() + answer["checked"][1:])


@cli.command("registries:add")
@click.argument("host")
@scope_option
@click.option("--username", help="static: the registry user name.")
@click.option("--password", help="static: the password or token.")
@click.option("--password-stdin", is_flag=True, help="static: read the password from stdin.")
@click.option("--aws-ecr", is_flag=True, help="Fetch AWS ECR tokens (GetAuthorizationToken).")
@click.option("--aws-region", help="aws-ecr: the region (else the host's, or AWS_REGION).")
@click.option("--aws-access-key-id", help="aws-ecr: keys (else the server's own AWS credentials).")
@click.option("--aws-secret-access-key", help="aws-ecr: the secret key.")
@click.option("--aws-secret-access-key-stdin", is_flag=True, help="aws-ecr: read it from stdin.")
@click.option("--aws-role-arn", help="aws-ecr: a role to assume first.")
@click.option("--aws-endpoint-url", help="aws-ecr: another ECR API endpoint.")
@click.option("--credential-helper", metavar="NAME", help="Run docker-credential-NAME get.")
@click.option(
    "--cache-seconds", type=int, help="credential-helper: keep an answer this long (300)."
)
@output_option
@pass_session
def registries_add(
    session: Session,
    /,
    host: str,
    app: str | None,
    password_stdin: bool,
    aws_secret_access_key_stdin: bool,
    output: str,
    **options: Any,
) -> None:
    """Add (or replace) the credential source for HOST; it is fetched once to check it."""
    if password_stdin:
        if options["password"] is not None:
            raise InvalidInput("pass --password or --password-stdin, not both")
        options["password"] = _read_stdin(session, "--password-stdin")
    if aws_secret_access_key_stdin:
        if options["aws_secret_access_key"] is not None:
            raise InvalidInput(
                "pass --aws-secret-access-key or --aws-secret-access-key-stdin, not both"
            )
        options["aws_secret_access_key"] = _read_stdin(session, "--aws-secret-access-key-stdin")
    body = {k: v for k, v in options.items() if v is not None and v is not False}
    added = session.client.request("POST", "/registries", json={"host": host, "app": app, **body})
    if output == "json":
        print_json(session.env, added)
        return
    source = added["source"]
    scope = "every app" if source["scope"] == "global" else source["app"]
    verb = "Replaced" if added["replaced"] else "Added"
    echo(session.env, f"{verb} the {source['kind']} source for {source['host']} ({scope})")
    _print_fetch(session, added)


@cli.command("registries:test")
@click.argument("host")
@scope_option
@click.option("--image", help="An image on HOST to resolve with the credentials.")
@output_option
@pass_session
def registries_test(
    session: Session, host: str, app: str | None, image: str | None, output: str
) -> None:
    """Fetch HOST's credentials now and check them against the registry."""
    tested = session.client.request(
        "POST", f"/registries/{host}/test", json={"app": app, "image": image}
    )
    if output == "json":
        print_json(session.env, tested)
        return
    _print_fetch(session, tested)


@cli.command("registries:refresh")
@click.argument("host", required=False)
@scope_option
@output_option
@pass_session
def registries_refresh(session: Session, host: str | None, app: str | None, output: str) -> None:
    """Fetch credentials again now, bypassing the cache (one host, or every source)."""
    done = session.client.request("POST", "/registries/refresh", json={"app": app, "host": host})
    if output == "json":
        print_json(session.env, done)
        return
    if not done:
        echo(session.env, "No source fetches credentials: nothing to refresh")
    for answer in done:
        _print_fetch(session, answer)
    if any(answer["error"] for answer in done):
        raise OperationFailed("a source failed to fetch credentials")


@cli.command("registries:remove")
@click.argument("host")
@scope_option
@output_option
@pass_session
def registries_remove(session: Session, host: str, app: str | None, output: str) -> None:
    """Remove the credential source for HOST."""
    removed = session.client.request(
        "DELETE", f"/registries/{host}", params={"app": app} if app else None
    )
    if output == "json":
        print_json(session.env, removed)
        return
    source = removed["source"]
    scope = "every app" if source["scope"] == "global" else source["app"]
    echo(session.env, f"Removed the {source['kind']} source for {source['host']} ({scope})")
    if removed["used_by"]:
        echo(
            session.env,
            f"Current releases of {', '.join(removed['used_by'])} pull from {source['host']}: "
            "their next pulls get no credentials from this source",
            err=True,
        )


# --- domains ---


def _print_domains(session: Session, found: dict[str, Any]) -> None:
    echo(session.env, f"{found['default']} (default)")
    for host in found["hosts"]:
        echo(session.env, host)


@cli.command("domains")
@app_option
@output_option
@pass_session
def domains_list(session: Session, app: str, output: str) -> None:
    """List the host names the app answers on: <app>.<domain>, then its custom domains."""
    found = session.client.request("GET", f"/apps/{app}/domains")
    if output == "json":
        print_json(session.env, found)
        return
    _print_domains(session, found)


@cli.command("domains:add")
@app_option
@click.argument("hosts", nargs=-1, required=True, metavar="HOST...")
@output_option
@pass_session
def domains_add(session: Session, app: str, hosts: tuple[str, ...], output: str) -> None:
    """Make the app answer on HOST (www.example.com, or a wildcard *.example.com).

    All are added or none. A name belongs to one app: one another app holds
    is refused (exit 5). Point the name's DNS at the router.
    """
    found = session.client.request("POST", f"/apps/{app}/domains", json={"hosts": list(hosts)})
    if output == "json":
        print_json(session.env, found)
        return
    if found["added"]:
        echo(session.env, f"Added {', '.join(found['added'])} to {app}")
    else:
        echo(session.env, f"{app} already answers on {', '.join(hosts)}")


@cli.command("domains:remove")
@app_option
@click.argument("host")
@output_option
@pass_session
def domains_remove(session: Session, app: str, host: str, output: str) -> None:
    """Stop answering on HOST (the default <app>.<domain> name stays)."""
    found = session.client.request("DELETE", f"/apps/{app}/domains/{host}")
    if output == "json":
        print_json(session.env, found)
        return
    echo(session.env, f"Removed {host} from {app}")


# --- HTTPS certificates ---


def _read_pem(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} file {path} is not PEM (not even text)") from None


@cli.command("certs")
@app_option
@output_option
@pass_session
def certs_list(session: Session, app: str, output: str) -> None:
    """List the app's names with their certificate: source, issuer, expiry, status, and the
    last ACME error of a name whose order failed (it is retried with a back-off)."""
    found = session.client.request("GET", f"/apps/{app}/certs")
    if output == "json":
        print_json(session.env, found)
        return
    rows = [
        [
            c["name"],
            c["source"] or "-",
            c["issuer"] or "-",
            short_time(c["not_after"]) if c["not_after"] else "-",
            c["status"],
            c["last_error"] or "",
        ]
        for c in found
    ]
    table(session.env, ["NAME", "SOURCE", "ISSUER", "EXPIRES", "STATUS", "LAST ERROR"], rows)


@cli.command("certs:add")
@app_option
@click.option("--cert", "cert", required=True, help="The certificate and its chain (PEM file).")
@click.option("--key", "key", required=True, help="Its private key (PEM file).")
@click.option("--name", default=None, help="Only this domain (default: all it covers).")
@output_option
@pass_session
def certs_add(
    session: Session, app: str, cert: str, key: str, name: str | None, output: str
) -> None:
    """Serve a certificate you bring for the app's domains it covers.

    It must be PEM, match its key, cover the domain and not be expired.
    """
    body: dict[str, Any] = {
        "certificate": _read_pem(cert, "certificate"),
        "private_key": _read_pem(key, "key"),
    }
    if name is not None:
        body["name"] = name
    found = session.client.request("POST", f"/apps/{app}/certs", json=body)
    if output == "json":
        print_json(session.env, found)
        return
    echo(session.env, f"Installed the certificate for {', '.join(found['names'])} on {app}")


@cli.command("apps:update")
@app_option
@click.option(
    "--force-https",
    "force_https",
    type=click.Choice(["on", "off"]),
    required=True,
    help="Redirect plain HTTP requests to HTTPS (308).",
)
@output_option
@pass_session
def apps_update(session: Session, app: str, force_https: str, output: str) -> None:
    """Change how the app is served."""
    found = session.client.request(
        "PATCH", f"/apps/{app}/https", json={"force_https": force_https == "on"}
    )
    if output == "json":
        print_json(session.env, found)
        return
    state = "redirects HTTP to HTTPS" if found["force_https"] else "serves HTTP and HTTPS"
    echo(session.env, f"{app} {state}")


# --- operations ---


def _operation_rows(operations: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [o["id"], o["type"], o["status"], o["created_by"], short_time(o["created_at"])]
        for o in operations
    ]


@cli.command("operations")
@app_option
@output_option
@pass_session
def operations_list(session: Session, app: str, output: str) -> None:
    """List the app's operations, newest first."""
    operations = session.client.request("GET", f"/apps/{app}/operations")
    if output == "json":
        print_json(session.env, operations)
        return
    table(session.env, ["id", "type", "status", "by", "created"], _operation_rows(operations))


@cli.command("operation:show")
@click.argument("operation_id", type=int)
@output_option
@pass_session
def operation_show(session: Session, operation_id: int, output: str) -> None:
    """Show one operation."""
    operation = session.client.request("GET", f"/operations/{operation_id}")
    if output == "json":
        print_json(session.env, operation)
        return
    table(session.env, ["id", "type", "status", "by", "created"], _operation_rows([operation]))
    if operation["message"]:
        echo(session.env, operation["message"])


@cli.command("operation:logs")
@click.argument("operation_id", type=int)
@output_option
@pass_session
def operation_logs(session: Session, operation_id: int, output: str) -> None:
    """Print an operation's log so far."""
    lines = session.client.request("GET", f"/operations/{operation_id}/logs")
    if output == "json":
        print_json(session.env, lines)
        return
    for line in lines:
        _print_log_line(session.env, line)


@cli.command("operation:follow")
@click.argument("operation_id", type=int)
@output_option
@pass_session
def operation_follow(session: Session, operation_id: int, output: str) -> None:
    """Stream an operation's log until it ends; exit 0 only if it succeeded."""
    _follow(session, operation_id, output)


@cli.command("operation:cancel")
@click.argument("operation_id", type=int)
@output_option
@pass_session
def operation_cancel(session: Session, operation_id: int, output: str) -> None:
    """Cancel a queued operation, or ask a running one to stop."""
    operation = session.client.request("POST", f"/operations/{operation_id}/cancel")
    if output == "json":
        print_json(session.env, operation)
        return
    if operation["status"] == "cancelled":
        echo(session.env, f"Operation {operation_id} cancelled")
    else:
        echo(session.env, f"Operation {operation_id} is running; asked it to stop")


def _print_log_line(env: Environment, line: dict[str, Any]) -> None:
    stamp = short_time(line["at"])[11:]
    if env.color:
        echo(env, click.style(stamp, dim=True) + " " + line["line"])
    else:
        echo(env, f"{stamp} {line['line']}")


def _await_operation(
    session: Session, operation: dict[str, Any], *, detach: bool, output: str
) -> None:
    if detach:
        if output == "json":
            print_json(session.env, operation)
        else:
            echo(session.env, str(operation["id"]))
        return
    if output == "text":
        echo(
            session.env,
            f"Operation {operation['id']} ({operation['type']} {operation['app']}) started",
            err=True,
            dim=True,
        )
    _follow(session, operation["id"], output)


def _follow(session: Session, operation_id: int, output: str) -> None:
    final: dict[str, Any] = {}
    # The log's "ERROR: ..." line waits: if it is the operation's last word,
    # the error printed at the end says it, once.
    held: dict[str, Any] | None = None
    for event in session.client.follow(operation_id):
        if event["kind"] == "log" and output == "text":
            if held is not None:
                _print_log_line(session.env, held)
                held = None
            if event["line"].startswith("ERROR: "):
                held = event
            else:
                _print_log_line(session.env, event)
        elif event["kind"] == "end":
            final = event["operation"]
    if output == "json":
        print_json(session.env, final)
    status = final.get("status")
    message = final.get("message") or "no reason given"
    if held is not None and (status == "succeeded" or held["line"] != f"ERROR: {message}"):
        _print_log_line(session.env, held)
    if status != "succeeded":
        raise OperationFailed(f"operation {operation_id} {status}: {message}")
    if output == "text":
        echo(session.env, f"Operation {operation_id} succeeded", err=True, fg="green")


# One-off commands live in a module of their own (their WebSocket client too).
from dockyard.cli.runs import one_off_commands  # noqa: E402

for _command in one_off_commands(app_option):
    cli.add_command(_command)


def main(
    args: Sequence[str] | None = None,
    env: Environment | None = None,
    extra_commands: Sequence[click.Command] = (),
) -> int:
    """Run one command; return its exit code. Errors print one line to stderr."""
    env = env or Environment()
    session = Session(env)
    for command in extra_commands:
        cli.add_command(command)
    try:
        result = cli.main(
            args=list(args) if args is not None else None,
            obj=session,
            standalone_mode=False,
            prog_name="dockyard",
        )
        # Without standalone mode click returns what a command's Exit carries
        # (`run` ends with its command's status); other commands return None.
        return int(result) if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Abort:
        echo(env, "Aborted.", err=True)
        return ExitCode.ERROR
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        echo(env, f"Error: {exc.format_message()}", err=True, fg="red")
        return ExitCode.USAGE
    except ApiError as exc:
        echo(env, f"Error: {exc.message}{_hint(session, exc)}", err=True, fg="red")
        return exc.exit_code
    except InvalidInput as exc:
        echo(env, f"Error: {exc.message}", err=True, fg="red")
        return ExitCode.INVALID
    except OperationFailed as exc:
        echo(env, f"Error: {exc}", err=True, fg="red")
        return ExitCode.OPERATION_FAILED
    finally:
        session.close()


def _hint(session: Session, error: ApiError) -> str:
    """What to do about an error, when the CLI knows: log in, or the app meant."""
    if error.status == 401:  # no token, or a wrong one (403, a user's, needs no login)
        return ": log in with `dockyard login --url URL --token TOKEN`"
    if error.exit_code == ExitCode.NOT_FOUND and session.app:
        if error.message != f"app {session.app!r} not found":
            return ""
        try:
            handles = [a["handle"] for a in session.client.request("GET", "/apps")]
        except ApiError:
            return ""
        return did_you_mean(session.app, handles)
    return ""
