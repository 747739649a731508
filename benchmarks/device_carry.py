"""Build the folder that travels to a lent GPU machine for benchmarks/device_entry.sh (default: .device/).

The GPU machine (see ../shared/device/README.md) has torch 2.11 but no colossalai, no datasets and a
transformers colossalai cannot use, no network, and takes 64 MiB per call: the working tree plus the carried
folders. This copies in:

  wheels/    the pure-Python wheels prepared in ../shared/device/wheels (colossalai 0.5.0, transformers 4.51.3, ...)
  kernels/   prebuilt cpu_adam_x86 / fused_optim_cuda .so files, if any (--kernels, or ../shared/device/kernels);
             without them device_entry.sh builds both for sm_90 there and returns them under $OUT/kernels,
             to be passed as --kernels next time
  build/     build_kernels.py (how those are built)
  smollm2/   SmolLM2's config and tokenizer, without the weights (538 MB cannot travel: the entry builds a
             random-weight model of the same shape)

then prints the size of each part, of the working tree that travels with it, and the total against 64 MiB
(exit 1 when over).

    python benchmarks/device_carry.py [--device_dir ../shared/device] [--kernels DIR] [--out .device]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = REPO_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"
LIMIT_BYTES = 64 * 2**20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def working_tree_bytes() -> int:
    """Tracked files plus untracked ones git does not ignore: what a device call copies besides the carry."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((REPO_ROOT / name).stat().st_size for name in listed if name and (REPO_ROOT / name).is_file())


def copy_files(sources: list[Path], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copy2(source, target / source.name)


def build_carry(device_dir: Path, smollm2: Path, kernels: Path | None, out: Path) -> dict[str, int]:
    """Fill `out` afresh; returns the bytes of each part."""
    wheels = sorted((device_dir / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"device_carry: no wheels in {device_dir / 'wheels'}")
    if not (smollm2 / "config.json").is_file():
        raise SystemExit(f"device_carry: {smollm2} has no config.json (run `make setup` and the tests once to import SmolLM2)")
    shutil.rmtree(out, ignore_errors=True)
    copy_files(wheels, out / "wheels")
    kernel_dir = kernels or device_dir / "kernels"
    kernel_files = sorted(kernel_dir.glob("*.so")) if kernel_dir.is_dir() else []
    if kernel_files:
        copy_files(kernel_files, out / "kernels")
    copy_files([device_dir / "build" / "build_kernels.py"], out / "build")
    copy_files([f for f in sorted(smollm2.iterdir()) if f.is_file() and not f.name.startswith(".")
                and not f.name.endswith(WEIGHT_SUFFIXES)], out / "smollm2")
    return {part.name: folder_bytes(part) for part in sorted(out.iterdir())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device_dir", default=str(REPO_ROOT.parent / "shared" / "device"),
                        help="the prepared wheels and build scripts (default: ../shared/device)")
    parser.add_argument("--smollm2", default=str(SMOLLM2), help="SmolLM2 Hugging Face folder (config + tokenizer used)")
    parser.add_argument("--kernels", default=None, help="folder with cpu_adam_x86.so / fused_optim_cuda.so built for the device")
    parser.add_argument("--out", default=str(REPO_ROOT / ".device"), help="carry folder (git-ignored; carry it as '.device')")
    args = parser.parse_args()
    out = Path(args.out)
    parts = build_carry(Path(args.device_dir), Path(args.smollm2), Path(args.kernels) if args.kernels else None, out)
    tree = working_tree_bytes()
    total = tree + sum(parts.values())
    for name, size in parts.items():
        print(f"{out.name}/{name:<8} {size / 2**20:6.1f} MiB")
    if "kernels" not in parts:
        print(f"{out.name}/kernels  (none: device_entry.sh builds them there; 88 s + 386 s on 2 CPU cores, unmeasured on the GPU machine)")
    print(f"working tree {tree / 2**20:6.1f} MiB")
    print(f"total        {total / 2**20:6.1f} MiB of {LIMIT_BYTES / 2**20:.0f} MiB")
    if total > LIMIT_BYTES:
        print("device_carry: over the 64 MiB a device call carries", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
