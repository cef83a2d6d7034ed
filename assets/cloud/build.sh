#!/usr/bin/env bash
# Build the Lambda code into assets/cloud/build: tui-chat and the few libraries its handlers
# import, as wheels for the Lambda runtime (Linux x86_64, CPython 3.12). boto3 comes with the runtime.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
rm -rf "$here/build"
mkdir -p "$here/build"
"$python" -m pip install --quiet --target "$here/build" \
  --platform manylinux2014_x86_64 --implementation cp --python-version 3.12 --only-binary=:all: \
  "PyJWT[crypto]>=2.8" "httpx>=0.27" "argon2-cffi>=23.1"
"$python" -m pip install --quiet --target "$here/build" --no-deps "$root"
echo "built $here/build ($(du -sh "$here/build" | cut -f1))"
