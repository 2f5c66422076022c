"""``cinefuse data movielens``: fetch a MovieLens release from GroupLens, checked and unpacked."""

from __future__ import annotations

import argparse

from cinefuse.choices import DATASET_VERSIONS


def register(subparsers) -> None:
    data = subparsers.add_parser(
        "data",
        help="download public data sets (MovieLens)",
        description="Download public data sets that cinefuse trains and evaluates on.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    ml = sub.add_parser(
        "movielens",
        help="download and unpack a MovieLens release from GroupLens",
        description=(
            "Download a MovieLens zip from files.grouplens.org, check its length, size, MD5 (pinned "
            "for the frozen releases, GroupLens's published .md5 for ml-latest-small), every member's "
            "CRC and the files the release must hold, then unpack it atomically into OUT/VERSION. "
            "Offline: download the zip elsewhere and pass it with --zip. MovieLens is licensed by "
            "GroupLens for research use; read the README in the unpacked folder."
        ),
        epilog="example: cinefuse data movielens --version ml-latest-small --out data/",
    )
    ml.add_argument("--version", required=True, choices=DATASET_VERSIONS, help="which release")
    ml.add_argument("--out", required=True, help="folder to unpack into (the release lands in OUT/VERSION)")
    ml.add_argument("--zip", dest="zip_path", help="use this already downloaded zip instead of the network")
    ml.add_argument("--base-url", help="folder URL holding the zips (default GroupLens, or "
                    "$CINEFUSE_MOVIELENS_URL), e.g. a mirror")
    ml.add_argument("--md5", help="accept this MD5 instead of the pinned or published one")
    ml.add_argument("--force", action="store_true", help="download and unpack again even if OUT/VERSION is there")
    ml.add_argument("--keep-zip", action="store_true", help="keep the zip beside the unpacked folder")
    ml.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    ml.set_defaults(handler=_movielens)


def _movielens(args: argparse.Namespace) -> int:
    from cinefuse.datasets.download import download_movielens

    target = download_movielens(
        args.version, args.out, url=args.base_url, zip_path=args.zip_path, force=args.force,
        keep_zip=args.keep_zip, expected_md5=args.md5, timeout=args.timeout,
        progress=True,
    )
    print(f"{args.version}: {target}")
    return 0
