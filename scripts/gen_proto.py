"""Regenerate lockd/v1 from proto/lockd/v1 with grpcio-tools and mypy-protobuf.

`python scripts/gen_proto.py` rewrites the generated files; `--check` regenerates into
a temporary directory and fails (exit 1) when the committed files differ, so a stale
lockd/v1 never passes `make test`.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("lockd") / "v1"
INIT_TEXT = '"""Generated protobuf and gRPC code for lockd.v1 (scripts/gen_proto.py)."""\n'


def generate(out_root: Path) -> Path:
    """Run protoc into out_root and return the generated package directory."""
    bin_dir = Path(sys.executable).parent
    well_known = resources.files("grpc_tools") / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    subprocess.run(command, check=True, cwd=PROTO_ROOT)
    package = out_root / PACKAGE_DIR
    (package / "__init__.py").write_text(INIT_TEXT)
    return package


def differences(generated: Path, committed: Path) -> list[str]:
    """Names of files that are missing, extra or different between the two trees."""
    names = {p.name for p in generated.iterdir()} | {
        p.name for p in committed.glob("*") if p.is_file() and p.suffix in {".py", ".pyi"}
    }
    stale = []
    for name in sorted(names):
        new, old = generated / name, committed / name
        if not new.exists() or not old.exists() or not filecmp.cmp(new, old, shallow=False):
            stale.append(name)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if lockd/v1 is stale")
    args = parser.parse_args()
    target = ROOT / PACKAGE_DIR
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        if args.check:
            stale = differences(generated, target)
            if stale:
                print(
                    "generated code in lockd/v1 is stale; run `make proto`: " + ", ".join(stale),
                    file=sys.stderr,
                )
                return 1
            print("lockd/v1 is up to date with proto/")
            return 0
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(generated, target)
    print(f"regenerated {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
