#!/usr/bin/env bash
# Installs the official AsyncAPI parser (@asyncapi/parser 3.x, from npm) that
# the schema export tests validate `asyncapi.json` with, unless it is there:
#
#   scripts/asyncapi-parser.sh    # prints the directory it is installed in
#
# It goes into $KAFKAESK_NODE_DIR (default ~/.cache/kafkaesk-ci/node), outside
# the repository, so every worktree and CI run shares one copy. node and npm
# come from apt when missing: a fresh CI machine has neither.
set -euo pipefail

NODE_DIR="${KAFKAESK_NODE_DIR:-$HOME/.cache/kafkaesk-ci/node}"
PARSER_VERSION="${ASYNCAPI_PARSER_VERSION:-3}"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "asyncapi-parser: installing nodejs and npm with apt" >&2
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
fi

# package.json's version, not the directory: an interrupted install leaves
# the directory without it, and is redone.
installed="$(node -e 'try { console.log(require(process.argv[1]).version) } catch { }' \
    "$NODE_DIR/node_modules/@asyncapi/parser/package.json")"
if [[ "$installed" != "$PARSER_VERSION" && "$installed" != "$PARSER_VERSION".* ]]; then
    echo "asyncapi-parser: installing @asyncapi/parser@$PARSER_VERSION into $NODE_DIR" >&2
    mkdir -p "$NODE_DIR"
    started=$SECONDS
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
        "@asyncapi/parser@$PARSER_VERSION" >&2
    echo "asyncapi-parser: installed in $((SECONDS - started)) s" >&2
fi
echo "$NODE_DIR"
