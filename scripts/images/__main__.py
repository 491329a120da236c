"""`python -m scripts.images` (what `make images` runs): build every image, one line per step.

python -m scripts.images --tag dev                 # all four images
python -m scripts.images --only gateway,registry   # some of them
python -m scripts.images --if-engine               # as the test suite does: without an
                                                   # engine, skip (exit 0) unless CI is set
"""

from __future__ import annotations

import argparse
import sys
import time

from scripts.images.base import BaseImageError, choose_base
from scripts.images.catalog import DEFAULT_BASE_IMAGE, IMAGES, ROOT, ImageSpec
from scripts.images.engine import EngineError, build, engine_problem, image_size, running_in_ci
from scripts.images.wheelhouse import (
    WHEELS_DIR,
    WheelhouseError,
    image_requirements,
    own_wheels,
    third_party_wheels,
)

LOG_DIR = ROOT / "build" / "images"
BUILD_TIMEOUT_S = 900.0


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.images", description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="dev", help="image tag (default: dev)")
    parser.add_argument(
        "--base-image",
        default=None,
        help=f"base image (default: {DEFAULT_BASE_IMAGE} if present or pullable, else the offline base)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="do not try to pull; build on the offline base"
    )
    parser.add_argument("--only", default="", help="comma-separated short names, e.g. gateway,python-runtime")
    parser.add_argument(
        "--if-engine",
        action="store_true",
        help="without a container engine, print why and exit 0 (exit 1 when CI is set)",
    )
    return parser.parse_args(argv)


def selected(only: str) -> list[ImageSpec]:
    if not only:
        return list(IMAGES)
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {spec.short_name: spec for spec in IMAGES}
    unknown = wanted - known.keys()
    if unknown:
        raise SystemExit(f"images: unknown image(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return [spec for name, spec in known.items() if name in wanted]


def build_all(specs: list[ImageSpec], tag: str, base: str) -> list[tuple[str, int]]:
    built = []
    for number, spec in enumerate(specs, start=1):
        ref = spec.ref(tag)
        log = LOG_DIR / f"{spec.short_name}.log"
        say(f"[{number}/{len(specs)}] {ref}: building {spec.dockerfile.relative_to(ROOT)} on {base}")
        started = time.monotonic()
        build(
            ROOT,
            ref,
            dockerfile=spec.dockerfile,
            build_args=[f"BASE_IMAGE={base}"],
            network="none",  # everything comes from the wheelhouse: proven, not assumed
            log=log,
            timeout=BUILD_TIMEOUT_S,
        )
        size = image_size(ref)
        elapsed = time.monotonic() - started
        say(f"[{number}/{len(specs)}] {ref}: built in {elapsed:.1f} s, {size / 1e6:.0f} MB")
        built.append((ref, size))
    return built


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    specs = selected(args.only)
    problem = engine_problem()
    if problem is not None:
        if args.if_engine and not running_in_ci():
            say(f"SKIPPED: no container engine ({problem}); the container suite is skipped too")
            return 0
        say(f"FAILED: no container engine: {problem}")
        return 1
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    try:
        fresh = third_party_wheels(LOG_DIR)
        say(f"third-party wheels: {'built' if fresh else 'cached'} in {WHEELS_DIR.relative_to(ROOT)}")
        own_wheels(LOG_DIR)
        image_requirements()
        say("own wheels and per-image requirements: written")
        base = choose_base(args.base_image, args.offline, DEFAULT_BASE_IMAGE, say)
        built = build_all(specs, args.tag, base)
    except (EngineError, BaseImageError, WheelhouseError) as exc:
        say(f"FAILED: {exc}")
        return 1
    say("done: " + ", ".join(f"{ref} {size / 1e6:.0f} MB" for ref, size in built))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
