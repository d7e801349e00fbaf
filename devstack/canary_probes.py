"""The isolation canary's probes (issue 24, point 7): what a command tries, and what must come of it.

Each probe is shell commands run through the API in the canary's session, with the scripts of
devstack/canary_scripts/ written to its workspace first. A probe that must be refused runs a
command that exits 0 only when it got through, printing `ESCAPED: …`, and otherwise prints what
stopped it (its `proof`): a command that could not even try (a tool missing, a crash) proves
nothing and fails the probe. The isolation promised is docs/SANDBOX.md's ("Isolation", "Egress").
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).with_name("canary_scripts")
FOLDER = ".canary"  # in the workspace: the scripts, the heartbeat, the npm install
ESCAPED = "ESCAPED"
NOT_REACHED = "not reached"  # what fetch.py and fetch.mjs say of a route that failed

# The metadata server's token endpoint, by name and by address, as Google's libraries ask for it
# (cloud.google.com/compute/docs/metadata/querying-metadata).
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
METADATA_URLS = (
    f"http://metadata.google.internal{METADATA_TOKEN_PATH}",
    f"http://169.254.169.254{METADATA_TOKEN_PATH}",
)
METADATA_HEADER = "Metadata-Flavor:Google"
OFF_THE_LIST = "https://example.com/"
# A small package from npm's registry, which the default allow-list holds (tests/test_egress.py installs it too).
PACKAGE = "is-number@7.0.0"
# docs/SANDBOX.md: 256 processes per command; twice that must never run at once.
PROCESSES_TRIED = 512


@dataclass(frozen=True)
class Probe:
    name: str
    expected: str  # in words, for the canary's line
    commands: tuple[str, ...]
    refused: bool  # True: the last command must fail, its output holding every text of `proof`
    proof: tuple[str, ...] = ()
    network: bool = False  # executeCommands' allowNetwork
    setup: tuple[str, ...] = ()  # run first, in an action of its own, which must succeed
    timeout: int = 30  # seconds per command


def script(name: str) -> str:
    return f"{FOLDER}/{name}"


def fetches(urls: tuple[str, ...], headers: tuple[str, ...] = ()) -> str:
    """Every route to each URL: through the proxy settings as urllib uses them and as a CONNECT
    tunnel (neither exists without network), direct from Python, and from Node, whose http
    modules ignore proxies. Exits 0 when one got an answer from its target (fetch.py says when
    that is)."""
    quoted = " ".join(map(shlex.quote, urls))
    python_headers = "".join(f" --header {shlex.quote(h)}" for h in headers)
    node_headers = "".join(f" {shlex.quote(h)}" for h in headers)
    # `||`: the node attempts run too when Python's all failed; `;` would lose Python's exit code.
    return f"python3 {script('fetch.py')} {quoted}{python_headers} || node {script('fetch.mjs')} {quoted}{node_headers}"


def probes(url: str, project: str) -> tuple[Probe, ...]:
    """The probes against the control plane at `url`, whose Firestore is `project`'s."""
    firestore = f"https://firestore.googleapis.com/v1/projects/{project}/databases/(default)/documents/sandboxRuns"
    write_home = (
        "python3 -c \"import os; open(os.environ['HOME'] + '/canary-python', 'w').write('canary')\""
        " && node -e \"require('fs').writeFileSync(require('os').homedir() + '/canary-node', 'canary')\""
        ' && cat "$HOME/canary-python" "$HOME/canary-node" > /dev/null && echo "wrote the workspace, $HOME/canary-python and $HOME/canary-node"'
    )
    install = (
        f"mkdir -p {FOLDER}/npm && cd {FOLDER}/npm && echo '{{\"private\": true}}' > package.json"
        f" && npm install --no-audit --no-fund --loglevel=error {PACKAGE}"
        " && node -e \"require('is-number'); console.log('is-number installed')\""
    )
    raise_limits = (
        "ulimit -p unlimited 2>&1; prlimit --pid $$ --nproc=unlimited:unlimited 2>&1;"
        " if command -v sudo > /dev/null; then sudo -n prlimit --pid $$ --nproc=unlimited:unlimited 2>&1; fi;"
        f" python3 {script('spawn.py')} {PROCESSES_TRIED}"
    )
    heartbeat = f"sh {script('heartbeat.sh')} {{}} {FOLDER}/heartbeat"
    not_reached = (NOT_REACHED,)
    return (
        Probe(
            "workspace-and-home",
            "writes succeed",
            (f"echo canary > {FOLDER}/written && cat {FOLDER}/written", write_home),
            refused=False,
        ),
        Probe(
            "metadata-with-network",
            "no token, proxied or direct",
            (fetches(METADATA_URLS, (METADATA_HEADER,)),),
            refused=True,
            proof=not_reached,
            network=True,
        ),
        Probe(
            "metadata-without-network",
            "no token",
            (fetches(METADATA_URLS, (METADATA_HEADER,)),),
            refused=True,
            proof=not_reached,
        ),
        Probe(
            "control-plane",
            f"{url} not reached",
            (fetches((f"{url}/healthz",)),),
            refused=True,
            proof=not_reached,
            network=True,
        ),
        # Refused, precisely: no credential to take (no variable or file google.auth would read; the
        # metadata token is the two probes above), and no answer at all from firestore.googleapis.com
        # (not even a 401: the host is off the allow-list and there is no other way out).
        Probe(
            "firestore-with-job-identity",
            "no credential, Firestore not reached",
            (f"python3 {script('credentials.py')} || {fetches((firestore,))}",),
            refused=True,
            proof=("no credential", NOT_REACHED),
            network=True,
        ),
        Probe(
            "host-off-allow-list",
            f"{OFF_THE_LIST} not reached",
            (fetches((OFF_THE_LIST,)),),
            refused=True,
            proof=not_reached,
            network=True,
        ),
        Probe(
            "install-through-allow-list",
            f"npm install {PACKAGE} succeeds",
            (install,),
            refused=False,
            network=True,
            timeout=120,
        ),
        Probe(
            "raise-own-limits",
            f"fewer than {PROCESSES_TRIED} processes at once",
            (raise_limits,),
            refused=True,
            proof=("held at",),
        ),
        # Last: the more actions between the start and the check, the longer a leftover had to show.
        Probe(
            "outlive-its-action",
            "heartbeat stopped by the next action",
            (heartbeat.format("check"),),
            refused=True,
            proof=("heartbeat stopped",),
            setup=(heartbeat.format("start"),),
        ),
    )
