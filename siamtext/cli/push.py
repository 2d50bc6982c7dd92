"""``siamtext push``: upload a saved model folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "push", help="upload a saved model folder to the Hugging Face Hub",
        description="Upload a folder written by save_pretrained (safetensors, JSON configs and "
                    "the README.md model card) to a Hub model repo, creating the repo if needed. "
                    "Prints the commit URL. Folders holding pickled files are refused.",
    )
    parser.add_argument("folder", metavar="DIR", help="the saved model folder")
    parser.add_argument("repo_id", metavar="REPO_ID", help="'owner/name' (or 'name' for yours)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--token", default=None,
                        help="Hub token with write access (default: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--commit-message", default=None, help="the commit message")
    parser.add_argument("--revision", default=None,
                        help="branch to commit to, created if missing (default: main)")
    parser.add_argument("--create-pr", action="store_true",
                        help="open a pull request instead of committing to the default branch")
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.hub import push_folder_to_hub

    url = push_folder_to_hub(
        args.folder, args.repo_id, private=args.private, token=args.token,
        commit_message=args.commit_message, revision=args.revision, create_pr=args.create_pr,
    )
    print(url)
    return 0
