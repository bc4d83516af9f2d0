"""Disk size of the base install and of each extra, each in a fresh virtual environment.

Creates a venv per variant in a temporary folder, installs this checkout with the pinned
constraints (as the README does), and records the size of site-packages. Needs the package
index. Run: python benchmarks/install_size.py [--variants base demo test]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import write

ROOT = Path(__file__).resolve().parents[1]


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def install(variant: str, where: Path) -> dict:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    py = where / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    empty = folder_mb(next(where.glob("lib/python*/site-packages")))
    spec = "." if variant == "base" else f".[{variant}]"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", "constraints.txt", "-e", spec], check=True, cwd=ROOT)
    site = next(where.glob("lib/python*/site-packages"))
    biggest = sorted(((folder_mb(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:5]
    return {"variant": variant, "site_packages_mb": folder_mb(site) - empty,
            "largest": [{"package": n, "mb": mb} for mb, n in biggest]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["base", "demo"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnwatch-install-") as tmp:
        for v in args.variants:
            rows.append(install(v, Path(tmp) / v))
            print(f"{v}: {rows[-1]['site_packages_mb']:.0f} MiB", file=sys.stderr, flush=True)
    md = ["<!-- begin sizes -->", "| install | site-packages | largest packages |", "|---|---|---|"]
    for r in rows:
        big = ", ".join(f"{p['package']} {p['mb']:.0f} MiB" for p in r["largest"][:3])
        md.append(f"| `pip install -c constraints.txt -e {'.' if r['variant'] == 'base' else '.[' + r['variant'] + ']'}` | "
                  f"{r['site_packages_mb']:.0f} MiB | {big} |")
    md.append("<!-- end sizes -->")
    write("install_size", {"rows": rows}, "\n".join(md), note="Fresh virtual environments, pinned constraints.")


if __name__ == "__main__":
    main()
