"""Bad input through both faces, counted: each gives one clear line and changes nothing.

Every case runs through the CLI's `main()` (exit status, stdout, stderr) and through `%jindr` in
a real IPython shell, against a registry whose storage tree is compared before and after the
module. A sample also runs through the `jindr` executable and through a real Jupyter kernel,
which must still be alive and answering at the end. The count of cases is printed at the end of
the test run and written to `tests/.counts/badinput.json` for the README.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from rig import ImageFactory, LocalRegistry, start_registry, write_counts

from jindr_nb import errors
from jindr_nb.cli import main
from jindr_nb.client import RegistryClient
from jindr_nb.errors import InvalidReference, JindrError
from jindr_nb.refs import parse_ref

COUNTS: Counter[str] = Counter()
INPUTS: set[tuple[str, ...]] = set()
SAMPLES = Path(__file__).resolve().parent.parent / "notebooks" / "data"
ERROR_BOUND_S = 15.0  # no single bad input may take longer than this to be refused


# ---- the target registry and the storage comparison ---------------------------------------------


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with its content hash, and every directory."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory):
    """A registry with two images; its storage must be byte-identical after every bad input."""
    reg = start_registry(tmp_path_factory.mktemp("badinput-registry"))
    with RegistryClient(reg.address) as c:
        f = ImageFactory(c, seed=11)
        f.index("app", ["latest", "v1"], layers=(1, 2))
        f.single("tool", ["1.0"])
    before = _tree(reg.storage)
    yield reg
    try:
        after = _tree(reg.storage)
        assert after == before, f"storage changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"
        assert reg.proc is not None and reg.proc.poll() is None, "the registry died"
    finally:
        reg.stop()
        _write_counts()


def _write_counts() -> None:
    """The report (not a test): how many distinct bad inputs ran, through which faces."""
    write_counts("badinput", bad_inputs=len(INPUTS), runs=sum(COUNTS.values()), by_face=dict(COUNTS))


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jindr_nb")
    return shell


# ---- the two faces and what a clear refusal looks like -------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException as exc:  # noqa: BLE001 - anything escaping main() is the bug under test
            pytest.fail(f"jindr {argv!r} raised {type(exc).__name__}: {exc}")
    return rc, out.getvalue(), err.getvalue(), time.monotonic() - started


def refused_by_cli(argv: list[str], *, usage: bool) -> str:
    """Run `argv` through the CLI and check it is refused in one clear line; returns that line."""
    rc, out, err, took = run_cli(argv)
    INPUTS.add(tuple(argv))
    COUNTS["cli"] += 1
    assert "Traceback" not in err + out, (argv, err)
    assert out == "", (argv, out)
    assert took < ERROR_BOUND_S, (argv, took)
    lines = err.rstrip("\n").split("\n")
    if usage:
        assert rc == 2, (argv, rc, err)
        assert lines[-1].startswith("jindr: error: "), (argv, err)
        assert all(line.startswith(("usage: ", " ")) for line in lines[:-1]), (argv, err)
    else:
        assert rc == 1, (argv, rc, err)
        assert len(lines) == 1 and lines[0].startswith("jindr: ") and len(lines[0]) > len("jindr: ") + 10, (argv, err)
    return lines[-1]


def refused_by_magic(ip: InteractiveShell, argv: list[str], *, usage: bool) -> str:
    """The same command line through `%jindr`, no DataFrame: a bad command line is a UsageError
    ending in the same line; anything else is jindr's own error, shown as one line under its name."""
    line = shlex.join(argv)
    started = time.monotonic()
    with pytest.raises((UsageError, JindrError)) as caught:
        ip.run_line_magic("jindr", line)
    COUNTS["magic"] += 1
    assert time.monotonic() - started < ERROR_BOUND_S, line
    if usage:
        assert isinstance(caught.value, UsageError), (line, caught.value)
        lines = str(caught.value).split("\n")
        assert lines[-1].startswith("%jindr: error: "), (line, lines)
        return lines[-1]
    assert isinstance(caught.value, JindrError), (line, caught.value)
    lines = caught.value._render_traceback_()
    name = f"{type(caught.value).__name__}: "
    assert len(lines) == 1 and lines[0].startswith(name) and len(lines[0]) > len(name) + 10, (line, lines)
    return lines[0].removeprefix(name)


def refused(ip: InteractiveShell, argv: list[str], *, usage: bool = False) -> str:
    cli_line = refused_by_cli(argv, usage=usage)
    magic_line = refused_by_magic(ip, argv, usage=usage)
    # The same words in both faces; only the prefixes differ.
    assert _words(cli_line) == _words(magic_line), (cli_line, magic_line)
    return cli_line


def _words(line: str) -> str:
    """The message without its face's prefix, and without a trailing "(ExceptionName)" that
    depends on the moment a connection broke."""
    for prefix in ("jindr: error: ", "%jindr: error: ", "jindr: "):
        if line.startswith(prefix):
            line = line[len(prefix) :]
            break
    return re.sub(r" \([A-Za-z]+Error\)$", "", line).replace("`%jindr ", "`jindr ")


# ---- malformed references (hypothesis) -----------------------------------------------------------


def _invalid(text: str) -> bool:
    try:
        parse_ref(text)
    except InvalidReference:
        return True
    return False


_valid_refs = st.builds(
    lambda repo, tag: f"{repo}:{tag}",
    st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)


def _mutate(ref: str, where: int, what: str) -> str:
    where %= len(ref) + 1
    return ref[:where] + what + ref[where:]


BAD_REFS = st.one_of(
    # arbitrary text over the reference alphabet plus the characters people mistype
    st.text(alphabet=st.sampled_from(list("abcXYZ019:/@._-+ !#%$*\\\"'é\t")), min_size=0, max_size=40),
    # a valid reference with one bad character or piece put in
    st.builds(_mutate, _valid_refs, st.integers(0, 60), st.sampled_from(["A", " ", "!", "//", "::", "@", "..", "_-"])),
    # pieces that are each almost right
    st.builds(lambda n: "a:" + "t" * n, st.integers(129, 300)),
    st.builds(lambda h: f"app@sha256:{h}", st.from_regex(r"[0-9a-fA-F]{0,70}", fullmatch=True)),
    st.builds(lambda h: f"app@md5:{h}", st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
    st.builds(lambda p: f"localhost:{p}/app", st.integers(65536, 10**7).map(str) | st.just("0") | st.just("x1")),
    st.builds(lambda n: "/".join(["a"] * n) + "/", st.integers(1, 5)),
).filter(_invalid)


def _commands_for(ref: str, address: str, scratch: Path) -> list[list[str]]:
    """Every command that takes an image reference, pointed at the target registry."""
    return [
        ["-r", address, "ins", ref],
        ["-r", address, "lsi", "-l", ref],
        ["-r", address, "rmi", "-y", ref],
        ["-r", address, "rmr", "-y", ref],
        ["-r", address, "cp", ref, address, "--to", "copied"],
        ["-r", address, "du", ref],
        ["-r", address, "save", ref, str(scratch / "out.tar")],
        ["-r", address, "load", str(SAMPLES / "archy"), ref],
    ]


@settings(
    max_examples=260,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(ref=BAD_REFS, which=st.integers(0, 7))
def test_malformed_references_are_refused(
    ip: InteractiveShell, target: LocalRegistry, tmp_path: Path, ref: str, which: int
) -> None:
    argv = _commands_for(ref, target.address, tmp_path)[which]
    # A reference that starts with "-" reads as an option: that is argparse's usage error.
    option = ref.startswith("-") and ref != "-"  # argparse reads a lone "-" as a value (stdin's name)
    line = refused(ip, argv, usage=option)
    if not option:
        assert "invalid" in line or "empty" in line, line
    assert not (tmp_path / "out.tar").exists()


# ---- the command line itself -------------------------------------------------------------------

UNKNOWN_COMMANDS = ["list", "rm", "delete", "push", "pull", "LS", "Ls", "ls2", "imgs", "inspect2", "gcc", "--", "x"]
UNKNOWN_OPTIONS = ["--bogus", "--force", "-Z", "--dry", "--no", "--n", "-Y", "--json=1", "--all-tags"]
ALL_COMMANDS = [
    ["start"],
    ["stop"],
    ["restart"],
    ["status"],
    ["info"],
    ["gc"],
    ["ls"],
    ["lsi"],
    ["ins", "app"],
    ["rmi", "--dry-run", "app:v1"],
    ["rmr", "--dry-run", "app"],
    ["cp", "app", "127.0.0.1:1"],
    ["du"],
]
WRONG_COUNTS = [
    (["ins"], "IMAGE"),
    (["inspect"], "IMAGE"),
    (["rmr"], "REPO"),
    (["delrepo", "-y"], "REPO"),
    (["load"], "PATH"),
    (["save"], "IMAGE"),
    (["save", "app"], "PATH"),
    (["save", "app", "a.tar", "extra"], "unrecognized"),
    (["cpe"], "IMAGE"),
    (["load", "a", "b", "c"], "unrecognized"),
    (["status", "extra"], "unrecognized"),
    (["gc", "app"], "unrecognized"),
    (["cp", "app"], "REGISTRY"),
    (["rmi", "-y"], "IMAGE"),
    (["rmi", "--dry-run"], "IMAGE"),
]
BAD_VALUES = [
    ["cp", "app", "{address}", "--jobs", "0"],
    ["cp", "app", "{address}", "--jobs", "-3"],
    ["cp", "app", "{address}", "--jobs", "65"],
    ["cp", "app", "{address}", "--jobs", "x"],
    ["cp", "app", "{address}", "-j", "1.5"],
    ["cpe", "app", "--keep", "0"],
    ["cpe", "app", "--keep", "many"],
    ["start", "--runtime", "kubernetes"],
    ["start", "--runtime", ""],
    ["start", "--runtime"],
    ["-r"],
    ["ls", "--registry"],
]


def test_unknown_commands(ip: InteractiveShell, target: LocalRegistry) -> None:
    for name in UNKNOWN_COMMANDS:
        argv = ["-r", target.address, name]
        line = refused(ip, argv, usage=True)
        assert "unknown command" in line or "required" in line or "arguments" in line, line


def test_unknown_options_on_every_command(ip: InteractiveShell, target: LocalRegistry) -> None:
    for i, command in enumerate(ALL_COMMANDS):
        for option in UNKNOWN_OPTIONS[i % 3 :: 3]:
            argv = ["-r", target.address, *command, option]
            line = refused(ip, argv, usage=True)
            assert "unrecognized arguments" in line or "expected" in line or "ignored explicit" in line, line


def test_wrong_argument_counts(ip: InteractiveShell, target: LocalRegistry) -> None:
    for argv, named in WRONG_COUNTS:
        if argv[0] == "rmi":
            # Without an image, `%jindr rmi` opens the cleanup panel: only the CLI refuses.
            line = refused_by_cli(["-r", target.address, *argv], usage=True)
        else:
            line = refused(ip, ["-r", target.address, *argv], usage=True)
        assert named in line, (argv, line)


def test_bad_option_values(ip: InteractiveShell, target: LocalRegistry) -> None:
    for template in BAD_VALUES:
        argv = ["-r", target.address, *[a.format(address=target.address) for a in template]]
        if template[0] == "-r":
            argv = template
        line = refused(ip, argv, usage=True)
        assert "argument" in line or "expected" in line, (argv, line)


#: Registry addresses that are not addresses, each with the one message it must get ({bad}: itself).
BAD_REGISTRIES = [
    ("localhost:0", 'invalid port "0" in "{bad}": expected 1-65535'),
    ("localhost:65536", 'invalid port "65536" in "{bad}": expected 1-65535'),
    ("127.0.0.1:99999", 'invalid port "99999" in "{bad}": expected 1-65535'),
    ("127.0.0.1:-1", 'invalid port "-1" in "{bad}": expected 1-65535'),
    ("127.0.0.1:abc", 'invalid port "abc" in "{bad}": expected 1-65535'),
    ("127.0.0.1:", 'invalid registry "{bad}": empty port'),
    ("http://127.0.0.1:5001", 'invalid registry "{bad}": give host[:port] without a scheme (e.g. localhost:5001)'),
    ("https://localhost", 'invalid registry "{bad}": give host[:port] without a scheme (e.g. localhost:5001)'),
    ("localhost:5001/", 'invalid registry "{bad}": expected host[:port]'),
    ("local host", 'invalid registry "{bad}": expected host[:port]'),
    ("[::1", 'invalid registry "{bad}": unclosed "[" in IPv6 address'),
    ("[zz::1]:5000", 'invalid registry "{bad}": "zz::1" is not an IPv6 address'),
    ("", "empty registry address"),
    ("a@b", 'invalid registry host "a@b" in "{bad}"'),
    ("UPPER_case:5000", 'invalid registry host "UPPER_case" in "{bad}"'),
    ("-bad.example", 'invalid registry host "-bad.example" in "{bad}"'),
    ("127.0.0.1:5001/repo", 'invalid registry "{bad}": expected host[:port]'),
    ("exa_mple.com", 'invalid registry host "exa_mple.com" in "{bad}"'),
]


def test_registries_that_are_not_addresses(ip: InteractiveShell, target: LocalRegistry, tmp_path: Path) -> None:
    for bad, says in BAD_REGISTRIES:
        for argv, usage in (
            ([f"--registry={bad}", "ls"], False),
            ([f"--registry={bad}", "start", "--runtime", "process", "-d", str(tmp_path / "never")], False),
            # as a positional, a value starting with "-" reads as an option: argparse's usage error
            (["-r", target.address, "cp", "app", bad], bad.startswith("-")),
        ):
            line = refused(ip, argv, usage=usage)
            expected = f"unrecognized arguments: {bad}" if usage else says.format(bad=bad)
            assert _words(line) == expected, (argv, line)
    assert not any(tmp_path.iterdir())


def test_start_refuses_other_machines(ip: InteractiveShell) -> None:
    for address in ["10.1.2.3:5000", "192.168.0.1:5001", "example.com:5000", "registry.internal"]:
        line = refused(ip, ["-r", address, "start", "--runtime", "process"])
        assert "only runs registries on this machine" in line, line


# ---- servers that are not registries -----------------------------------------------------------


class _Html(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def do_PUT(self) -> None:  # noqa: N802
        self.do_GET()

    do_POST = do_DELETE = do_PUT  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class _Json(_Html):
    """Answers 200 with JSON that is not what a registry sends (an API of some other kind)."""

    def do_GET(self) -> None:  # noqa: N802
        body = b'{"status": "ok", "items": [1, 2, 3]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815


class _NotFound(_Html):
    def do_GET(self) -> None:  # noqa: N802
        self.send_error(404)

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client speaking plain HTTP to the TLS port is the point of the test, not news


@contextlib.contextmanager
def _http_server(handler: type[BaseHTTPRequestHandler]):
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def _closing_port():
    """A TCP port that accepts and closes every connection at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def _tls_port(workdir: Path):
    """An HTTPS server (self-signed): jindr speaks plain HTTP to loopback, which it cannot answer."""
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _QuietServer(("127.0.0.1", 0), _Json)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def impostors(tmp_path_factory: pytest.TempPathFactory):
    """Addresses that answer, but not as a registry (and one that does not answer at all)."""
    with contextlib.ExitStack() as stack:
        found = {
            "html": stack.enter_context(_http_server(_Html)),
            "json": stack.enter_context(_http_server(_Json)),
            "404": stack.enter_context(_http_server(_NotFound)),
            "closes": stack.enter_context(_closing_port()),
            "tls": stack.enter_context(_tls_port(tmp_path_factory.mktemp("tls"))),
        }
        free = socket.create_server(("127.0.0.1", 0))
        found["refused"] = f"127.0.0.1:{free.getsockname()[1]}"
        free.close()
        yield found


IMPOSTOR_COMMANDS = [
    ["ls"],
    ["lsi"],
    ["lsi", "-l"],
    ["ins", "app"],
    ["rmi", "-y", "app:v1"],
    ["rmr", "-y", "app"],
    ["du"],
    ["gc"],
    ["save", "app", "{scratch}/app.tar"],
    ["load", str(SAMPLES / "archy"), "archy:bad"],
]


_DIGEST = "sha256:[0-9a-f]{{64}}"
_HANGS_UP = "{a} closed the connection during /v2/ or does not speak HTTP; check that the address is a registry's"
_JSON_MANIFEST = (
    "{a} sent app:latest, but manifest " + _DIGEST + " has media type 'application/json', which jindr does not"
)
#: What each impostor must be told (a regex, {a}: its address), by command; None: every other command.
#: "cp" copies from the impostor into the real registry, "cp-to" the other way.
IMPOSTOR_SAYS: dict[str, dict[str | None, str]] = {
    "html": {None: r"something answers at {a} but it is not a registry \(GET /v2/ gave 200 text/html\); check the"},
    "json": {
        None: "{a} answered the catalog listing without a 'repositories' list: it does not look like a registry",
        "rmi": "{a} answered the repository app listing without a 'tags' list: it does not look like a registry",
        "rmr": "{a} answered the repository app listing without a 'tags' list: it does not look like a registry",
        "ins": _JSON_MANIFEST,
        "save": _JSON_MANIFEST,
        "cp": _JSON_MANIFEST,
        "load": "{a} answered 200 for archy@" + _DIGEST,  # the manifest PUT got 200, not 201 Created
        "cp-to": "{a} answered 200 for app@" + _DIGEST,
    },
    "404": {None: "/v2/ not found in {a}"},
    "closes": {None: _HANGS_UP},
    "tls": {None: _HANGS_UP},
    "refused": {
        None: "no registry answers at {a} — start one there",
        "cp": "no registry answers at the source {a} — start one there",
        "cp-to": "no registry answers at the destination {a} — start one there",
    },
}
_NOT_RUN_HERE = r"jindr can only garbage-collect a registry it runs; none at {a} \(`info` lists them\)"


def _impostor_says(kind: str, command: str, address: str) -> str:
    said = _NOT_RUN_HERE if command == "gc" else IMPOSTOR_SAYS[kind].get(command, IMPOSTOR_SAYS[kind][None])
    return said.format(a=re.escape(address))


@pytest.mark.parametrize("kind", ["html", "json", "404", "closes", "tls", "refused"])
def test_addresses_that_are_not_registries(
    ip: InteractiveShell, target: LocalRegistry, impostors: dict[str, str], kind: str, tmp_path: Path
) -> None:
    address = impostors[kind]
    for command in IMPOSTOR_COMMANDS:
        argv = ["-r", address, *[a.format(scratch=tmp_path) for a in command]]
        line = refused(ip, argv)
        assert re.match(_impostor_says(kind, command[0], address), _words(line)), (argv, line)
    # Copies in both directions: from an impostor into the real registry, and the other way.
    for command, argv in (
        ("cp", ["-r", address, "cp", "app", target.address]),
        ("cp-to", ["-r", target.address, "cp", "app:v1", address]),
    ):
        line = refused(ip, argv)
        assert re.match(_impostor_says(kind, command, address), _words(line)), (argv, line)
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


# ---- the real executable and a real kernel -----------------------------------------------------


def test_the_executable_exits_cleanly(target: LocalRegistry, impostors: dict[str, str]) -> None:
    """A sample through `python -m jindr_nb`: real exit statuses, one line, no traceback."""
    cases = [
        (["nosuchcmd"], 2),
        (["-r", target.address, "ins", "Bad:Tag"], 1),
        (["-r", target.address, "rmi", "-y", "app@sha256:12"], 1),
        (["-r", target.address, "cp", "app", target.address, "--jobs", "0"], 2),
        (["-r", "localhost:70000", "ls"], 1),
        (["-r", impostors["html"], "lsi"], 1),
        (["-r", impostors["closes"], "ls"], 1),
        (["-r", impostors["tls"], "ins", "app"], 1),
        (["-r", "10.1.2.3:5000", "start"], 1),
        (["lsi", "--bogus"], 2),
    ]
    for argv, status in cases:
        proc = subprocess.run([sys.executable, "-m", "jindr_nb", *argv], capture_output=True, text=True, timeout=60)
        INPUTS.add(("exe", *argv))
        COUNTS["executable"] += 1
        assert proc.returncode == status, (argv, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == "", (argv, proc.stderr)
        lines = proc.stderr.rstrip("\n").split("\n")
        assert lines[-1].startswith("jindr: "), (argv, proc.stderr)
        assert status == 2 or len(lines) == 1, (argv, proc.stderr)


def test_a_real_kernel_survives_bad_input(target: LocalRegistry, impostors: dict[str, str]) -> None:
    """Bad lines in a Jupyter kernel: one-line errors, no traceback, and the kernel still answers."""
    from jupyter_client.manager import start_new_kernel

    lines = [
        "%jindr nosuchcmd",
        f"%jindr -r {target.address} ins Bad:Tag",
        f"%jindr -r {target.address} rmi -y 'app@sha256:12'",
        f"%jindr -r {target.address} cp app {target.address} --jobs 0",
        "%jindr -r localhost:70000 ls",
        f"%jindr -r {impostors['html']} lsi",
        f"%jindr -r {impostors['closes']} ls",
        f"%jindr -r {impostors['tls']} ins app",
        "%jindr -r 10.1.2.3:5000 start",
        "%jindr lsi --bogus",
        "%jindr ins 'unclosed quote",
    ]
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        reply = kc.execute_interactive("%load_ext jindr_nb", timeout=60)
        assert reply["content"]["status"] == "ok"
        for line in lines:
            seen: list[dict] = []
            kc.execute_interactive(line, timeout=60, output_hook=lambda msg, seen=seen: seen.append(msg))
            INPUTS.add(("kernel", line))
            COUNTS["kernel"] += 1
            text = "".join(
                m["content"].get("text", "") + "".join(m["content"].get("traceback", []))
                for m in seen
                if m["msg_type"] in ("stream", "error")
            )
            assert any(f"{name}: " in text for name in ("UsageError", *errors.__all__)), (line, text)
            assert "Traceback" not in text and "File " not in text, (line, text)
        seen = []
        reply = kc.execute_interactive(
            f"df = %jindr -r {target.address} lsi\nprint(len(df), sorted(set(df.repository)))",
            timeout=60,
            output_hook=seen.append,
        )
        assert reply["content"]["status"] == "ok"
        printed = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        assert "3 ['app', 'tool']" in printed, printed
        assert km.is_alive()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_shell_still_works_after_all_that(ip: InteractiveShell, target: LocalRegistry) -> None:
    frame = ip.run_line_magic("jindr", f"-r {target.address} lsi")
    assert sorted(zip(frame.repository, frame.tag, strict=True)) == [("app", "latest"), ("app", "v1"), ("tool", "1.0")]
