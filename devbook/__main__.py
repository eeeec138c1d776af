"""Command line: ``python -m devbook run CHAPTER --preset P -p name=value`` and ``build``."""

from __future__ import annotations

import argparse
import sys
import time

from devbook.presets import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devbook", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one chapter through papermill")
    run.add_argument("chapter", help="path of the chapter, e.g. book/theory/llc.md")
    run.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    run.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter of the chapter (repeatable)",
    )
    run.add_argument("-o", "--output", default=None, help="executed notebook path")
    build = sub.add_parser("build", help="execute every chapter of _toc.yml and render the HTML book")
    build.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    args = parser.parse_args(argv)

    try:
        if args.command == "run":
            from devbook.chapters import execute, parse_value

            overrides = {}
            for item in args.parameter:
                name, sep, value = item.partition("=")
                if not sep or not name:
                    raise ValueError(f"parameters are given as NAME=VALUE, got {item!r}")
                overrides[name] = parse_value(value)
            start = time.perf_counter()
            out = execute(args.chapter, args.preset, overrides, args.output)
            print(
                f"executed {args.chapter} at preset {args.preset} in {time.perf_counter() - start:.0f} s -> {out}"
            )
        else:
            from devbook.book import build as build_book

            build_book(args.preset)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
