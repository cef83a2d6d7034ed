#!/usr/bin/env bash
# Build the Lambda code into assets/cloud/build: tui-chat and the few libraries its handlers
# import, as wheels for the Lambda runtime (Linux arm64, CPython 3.12; the template's functions run
# on Graviton). boto3 comes with the runtime. AWS Lambda Powertools (logs, metrics) and the X-Ray
# SDK (its tracer) are optional to the code and bundled here: without them there are no traces
# or metrics.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
rm -rf "$here/build"
mkdir -p "$here/build"
wheels=(--quiet --target "$here/build" --platform manylinux2014_aarch64 --implementation cp
        --python-version 3.12 --only-binary=:all:)
"$python" -m pip install "${wheels[@]}" \
  "PyJWT[crypto]>=2.15" "httpx>=0.27" "argon2-cffi>=23.1" "aws-lambda-powertools>=3.0" "wrapt>=1.14"
# The X-Ray SDK without its botocore: a bundled botocore would shadow the runtime's, and the
# runtime's boto3 expects its own.
"$python" -m pip install "${wheels[@]}" --no-deps "aws-xray-sdk>=2.12"
"$python" -m pip install --quiet --target "$here/build" --no-deps "$root"
echo "built $here/build ($(du -sh "$here/build" | cut -f1))"
