# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate push CHECKPOINT_DIR REPO_ID`: publish a checkpoint folder to the Hub (model, processor, remote code, card).

A Hub that cannot be reached ends the command with one line naming the repository and the cause.
"""

import argparse


def push_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "push", help="publish a checkpoint folder to the Hub (model, processor, remote code, model card)",
        description="Publish an AVIGATE checkpoint folder to the Hugging Face Hub in one commit.")
    parser.add_argument("checkpoint_dir", help="folder written by save_pretrained (model, optionally processor)")
    parser.add_argument("repo_id", help="target repository, user/name")
    parser.add_argument("--eval-results", help="evaluation JSON (default: checkpoint_dir/eval_results.json)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--commit-message", default="Upload AVIGATE model")
    parser.add_argument("--token", help="Hub token (default: the logged-in user's)")
    parser.add_argument("--revision", help="branch to commit to")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--license", default="apache-2.0", help="licence in the model card")
    parser.add_argument("--datasets", nargs="*", help="Hub dataset ids for the card (default: from eval results)")
    parser.add_argument("--no-validate-card", action="store_true", help="skip the Hub's card metadata check")
    parser.add_argument("--stage-only", metavar="DIR", help="write the repository contents into DIR, upload nothing")
    parser.set_defaults(func=push_command)
    return parser


def push_command(args: argparse.Namespace) -> None:
    from ..hub import push_avigate_to_hub, stage_avigate_checkpoint

    card_kwargs = {"license": args.license, "datasets": args.datasets}
    if args.stage_only:
        stage_avigate_checkpoint(args.checkpoint_dir, args.stage_only, args.eval_results, repo_id=args.repo_id,
                                 **card_kwargs)
        print(f"Staged {args.repo_id} in {args.stage_only}")
        return
    commit = push_avigate_to_hub(args.checkpoint_dir, args.repo_id, private=args.private,
                                 eval_results=args.eval_results, commit_message=args.commit_message,
                                 token=args.token, revision=args.revision, create_pr=args.create_pr,
                                 validate_card=not args.no_validate_card, **card_kwargs)
    print(f"Pushed to {commit.commit_url}")
