"""``python -m tui_chat_dev serve-lambda [serve flags] [--dynamodb-endpoint URL] [--table-prefix P]``.

The Lambda handlers behind the local API Gateway emulator, over DynamoDB (an in-process moto
server unless ``--dynamodb-endpoint`` names one), on ``tui-chat serve``'s flags, so clients and
tests use it exactly like the self-hosted server. A development tool: it needs the test extra
(moto) and is not part of the installed product.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from tui_chat.cli import add_serve_parser, run_serve

    parser = argparse.ArgumentParser(prog="python -m tui_chat_dev", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = add_serve_parser(commands, "serve-lambda", "The Lambda handlers behind a local API Gateway emulator, over DynamoDB.")
    serve.add_argument("--dynamodb-endpoint", help="DynamoDB endpoint URL (default: an in-process moto server on 127.0.0.1)")
    serve.add_argument("--table-prefix", default="tui-chat-", help="DynamoDB table name prefix (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        from tui_chat_dev.emulator import build_emulator, tune_process, use_fake_credentials
    except ImportError as exc:
        print(f"serve-lambda needs a package that is not installed: {exc.name} (pip install -e '.[test]')", file=sys.stderr)
        return 1
    tune_process()
    use_fake_credentials(args.cognito_region or "us-east-1")
    return run_serve(args, build=lambda options: build_emulator(options, dynamodb_endpoint=args.dynamodb_endpoint, table_prefix=args.table_prefix))


if __name__ == "__main__":
    sys.exit(main())
