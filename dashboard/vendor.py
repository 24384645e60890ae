"""Browser files the dashboard serves from other projects, vendored from the npm registry and committed, so
`make run` works on a machine with no network and no Node.js.

Each is pinned by version, by the registry's integrity hash of its package tarball (what `npm` itself checks),
and by the SHA-256 of the one file we take from it. `python -m dashboard.vendor check` (part of `make lint`)
proves the committed files are those; `python -m dashboard.vendor fetch` downloads them again with `npm pack`,
checks both hashes and writes them (bump the pins here to upgrade).

Plain Python, no Django: it runs before settings exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static" / "dashboard" / "vendor"


@dataclass(frozen=True)
class Vendored:
    package: str
    version: str
    integrity: str  # the npm registry's dist.integrity of the tarball (SRI: sha512-<base64>)
    members: dict[str, tuple[str, str]]  # path in the tarball -> (file name under STATIC, its sha256)


VENDORED = [
    # Chart.js: maintained (chartjs.org), MIT, one UMD file with no dependencies, draws on a canvas (no inline
    # style or script, so the dashboard's CSP holds), tooltips and legends built in.
    Vendored(
        package="chart.js",
        version="4.6.2",
        integrity="sha512-xachB+pPHjp0syJi7llUBA1w3kMYl6NF3o7eVrvjnWCT+IB2zMaF2pX5UYDiwbbfsioFEIRnAjreNOMsGj5TIA==",
        members={
            "package/dist/chart.umd.min.js": (
                "chart.umd.min.js",
                "3f288f4f26882c26b58931fb586a9b4f30370b5de38d69dc005b0bd05b08e113",
            ),
            "package/LICENSE.md": (
                "chart.js.LICENSE.md",
                "41a84aa2caba645f966a18d9c2056b73e6d3a81d80bc0046bc0011a2634d4cce",
            ),
        },
    ),
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check() -> list[str]:
    """What is wrong with the committed files (empty: all as pinned)."""
    problems = []
    for item in VENDORED:
        for name, digest in item.members.values():
            path = STATIC / name
            if not path.is_file():
                problems.append(f"{path}: missing (python -m dashboard.vendor fetch)")
            elif digest and sha256(path.read_bytes()) != digest:
                problems.append(f"{path}: not {item.package} {item.version} as pinned (sha256 differs)")
    return problems


def integrity_matches(data: bytes, integrity: str) -> bool:
    algorithm, _, expected = integrity.partition("-")
    return algorithm == "sha512" and base64.b64encode(hashlib.sha512(data).digest()).decode() == expected


def fetch() -> None:
    """Download each package with `npm pack`, check its integrity and its files' hashes, write the files."""
    STATIC.mkdir(parents=True, exist_ok=True)
    for item in VENDORED:
        with tempfile.TemporaryDirectory() as tmp:
            spec = f"{item.package}@{item.version}"
            out = subprocess.run(  # noqa: S603 - fixed arguments, npm from PATH
                ["npm", "pack", spec, "--json", "--pack-destination", tmp],  # noqa: S607
                check=True,
                capture_output=True,
                text=True,
            )
            tarball = Path(tmp) / json.loads(out.stdout)[0]["filename"]
            data = tarball.read_bytes()
            if not integrity_matches(data, item.integrity):
                raise SystemExit(f"{spec}: the tarball's sha512 is not the pinned integrity")
            with tarfile.open(tarball) as archive:
                for member, (name, digest) in item.members.items():
                    extracted = archive.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"{spec}: no {member} in the package")
                    content = extracted.read()
                    if digest and sha256(content) != digest:
                        raise SystemExit(f"{spec}: {member} is not the pinned file (sha256 {sha256(content)})")
                    (STATIC / name).write_bytes(content)
                    print(f"{STATIC / name}: {spec} ({len(content)} bytes)")


def main(argv: list[str]) -> int:
    if argv[1:] == ["fetch"]:
        fetch()
        return 0
    if argv[1:] in ([], ["check"]):
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print("usage: python -m dashboard.vendor [check|fetch]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
